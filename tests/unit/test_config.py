"""Settings parsing: camelCase JSON, per-value fallbacks, environment."""

from __future__ import annotations

import pytest

from fimls.backends import base_url, resolve_key
from fimls.config import (
    MACHINE_ONLY,
    Multiline,
    Settings,
    field_names,
    from_workspace,
    load_user_config,
    parse_settings,
    settings_from_change,
    user_config_path,
)


def test_defaults_without_anything():
    settings, problems = parse_settings(None)
    assert settings == Settings()
    assert problems == []


def test_camel_case_keys_are_parsed():
    raw = {"maxTokens": 100, "debounceMs": 0, "multiline": "never", "topP": 0.9, "stream": False}
    settings, problems = parse_settings(raw)
    assert problems == []
    assert (settings.max_tokens, settings.debounce_ms, settings.multiline) == (100, 0, Multiline.NEVER)
    assert (settings.top_p, settings.stream) == (0.9, False)


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ({"maxTokens": 5000}, "maxTokens", "between 1 and 4096"),
        ({"maxTokens": "12"}, "maxTokens", "expected an integer"),
        ({"stream": 1}, "stream", "expected true or false"),
        ({"multiline": "sometimes"}, "multiline", "expected one of auto, always, never"),
        ({"temperature": 3}, "temperature", "between 0.0 and 2.0"),
        ({"debounceMs": -1}, "debounceMs", "between 0 and 10000"),
    ],
)
def test_invalid_values_fall_back_one_by_one(raw, field, message):
    settings, problems = parse_settings({**raw, "cacheSize": 7})
    assert settings.cache_size == 7  # the good value survives
    assert getattr(settings, Settings.__attrs_attrs__[field_names().index(field)].name) == getattr(
        Settings(), Settings.__attrs_attrs__[field_names().index(field)].name
    )
    assert len(problems) == 1
    assert field in problems[0] and message in problems[0]


def test_unknown_keys_are_reported():
    _settings, problems = parse_settings({"maxToken": 3, "colour": "red"})
    assert problems == ["unknown setting(s) ignored: colour, maxToken"]


def test_not_an_object():
    settings, problems = parse_settings(["x"])
    assert settings == Settings()
    assert problems and "must be an object" in problems[0]


def test_environment_fallbacks_and_config_wins():
    env = {"DEEPSEEK_API_KEY": " sk-env ", "DEEPSEEK_BASE_URL": "http://127.0.0.1:9"}
    settings, _ = parse_settings({})
    assert resolve_key(settings, env) == ("sk-env", None)
    assert base_url(settings, env) == "http://127.0.0.1:9"
    settings, _ = parse_settings({"apiKey": "sk-cfg", "baseUrl": "https://example.invalid"})
    assert resolve_key(settings, env) == ("sk-cfg", None)
    assert base_url(settings, env) == "https://example.invalid"
    settings, _ = parse_settings({"apiKeyEnv": "MY_KEY"})
    assert resolve_key(settings, {"MY_KEY": "sk-mine", **env}) == ("sk-mine", None)
    assert resolve_key(settings, {}) == (None, "no API key: set MY_KEY, apiKey or apiKeyCommand")
    assert base_url(parse_settings({"backend": "openai-compatible"})[0], env) == "http://127.0.0.1:8000"


def test_key_never_shown():
    settings, problems = parse_settings({"apiKey": 1234567})
    assert problems and "1234567" not in problems[0]
    settings, _ = parse_settings({"apiKey": "sk-secret-value"})
    assert "sk-secret-value" not in repr(settings)
    assert settings.redacted["apiKey"] == "***"
    assert settings.redacted["multiline"] == "auto"


def test_field_names_are_camel_case_and_complete():
    names = field_names()
    assert "maxTokensSingleLine" in names and "apiKey" in names
    assert len(names) == len(Settings.__attrs_attrs__)


def test_settings_from_change_picks_section():
    assert settings_from_change({"fimls": {"model": "m"}}) == {"model": "m"}
    assert settings_from_change({"model": "m"}) == {"model": "m"}
    assert settings_from_change(None) is None


def test_null_means_unset():
    settings, problems = parse_settings({"baseUrl": None, "languages": None, "model": None})
    assert problems == []
    assert settings.base_url is None and settings.languages is None
    assert base_url(settings, {"DEEPSEEK_BASE_URL": "http://127.0.0.1:9"}) == "http://127.0.0.1:9"


def test_workspace_configuration_may_not_choose_where_code_and_keys_go():
    raw = {"baseUrl": "https://evil.example", "apiKeyCommand": "curl evil", "debounceMs": 10}
    kept, problems = from_workspace(raw)
    assert kept == {"debounceMs": 10}
    assert len(problems) == 1 and "baseUrl, apiKeyCommand" in problems[0]
    for key in MACHINE_ONLY:
        assert key in field_names()
    assert from_workspace({"debounceMs": 10}) == ({"debounceMs": 10}, [])
    # The user's own value sent again (Helix repeats initializationOptions) is no attempt.
    same = {"baseUrl": "http://127.0.0.1:8080", "debounceMs": 5}
    assert from_workspace(same, {"baseUrl": "http://127.0.0.1:8080"}) == ({"debounceMs": 5}, [])


def test_user_config_file(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert load_user_config(env) == ({}, [])
    path = user_config_path(env)
    path.parent.mkdir()
    path.write_text('\ufeff{"backend": "ollama", "baseUrl": "http://127.0.0.1:11434"}', encoding="utf-8")
    assert load_user_config(env) == ({"backend": "ollama", "baseUrl": "http://127.0.0.1:11434"}, [])
    path.write_text("{oops", encoding="utf-8")
    data, problems = load_user_config(env)
    assert data == {} and "is not valid JSON" in problems[0] and str(path) in problems[0]


def test_a_key_http_cannot_carry_is_refused_before_any_request():
    key, problem = resolve_key(parse_settings({"apiKey": "sk-abc\nX-Evil: 1"})[0], {})
    assert key is None and "characters HTTP cannot send" in problem and "sk-abc" not in problem
