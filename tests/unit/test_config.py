"""Settings parsing: camelCase JSON, per-value fallbacks, environment."""

from __future__ import annotations

import pytest

from fimls.config import Multiline, Settings, field_names, parse_settings, settings_from_change


def test_defaults_without_anything():
    settings, problems = parse_settings(None, env={})
    assert settings == Settings()
    assert problems == []


def test_camel_case_keys_are_parsed():
    raw = {"maxTokens": 100, "debounceMs": 0, "multiline": "never", "topP": 0.9, "stream": False}
    settings, problems = parse_settings(raw, env={})
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
    settings, problems = parse_settings({**raw, "cacheSize": 7}, env={})
    assert settings.cache_size == 7  # the good value survives
    assert getattr(settings, Settings.__attrs_attrs__[field_names().index(field)].name) == getattr(
        Settings(), Settings.__attrs_attrs__[field_names().index(field)].name
    )
    assert len(problems) == 1
    assert field in problems[0] and message in problems[0]


def test_unknown_keys_are_reported():
    _settings, problems = parse_settings({"maxToken": 3, "colour": "red"}, env={})
    assert problems == ["unknown setting(s) ignored: colour, maxToken"]


def test_not_an_object():
    settings, problems = parse_settings(["x"], env={})
    assert settings == Settings()
    assert problems and "must be an object" in problems[0]


def test_environment_fallbacks_and_config_wins():
    env = {"DEEPSEEK_API_KEY": " sk-env ", "DEEPSEEK_BASE_URL": "http://127.0.0.1:9"}
    settings, _ = parse_settings({}, env=env)
    assert settings.api_key == "sk-env"
    assert settings.base_url == "http://127.0.0.1:9"
    settings, _ = parse_settings({"apiKey": "sk-cfg", "baseUrl": "https://example.invalid"}, env=env)
    assert settings.api_key == "sk-cfg"
    assert settings.base_url == "https://example.invalid"


def test_key_never_shown():
    settings, problems = parse_settings({"apiKey": 1234567}, env={})
    assert problems and "1234567" not in problems[0]
    settings, _ = parse_settings({"apiKey": "sk-secret-value"}, env={})
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
    env = {"DEEPSEEK_BASE_URL": "http://127.0.0.1:9"}
    settings, problems = parse_settings({"baseUrl": None, "languages": None, "model": None}, env=env)
    assert problems == []
    assert settings.base_url == "http://127.0.0.1:9" and settings.languages is None
