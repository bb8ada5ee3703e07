"""Raw FIM templates, byte for byte: every family, the context layouts, guessing and the setting."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fimls.backends import templates
from fimls.backends.base import FimRequest
from fimls.config import TEMPLATE_FAMILIES, parse_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import fake_templates

PREFIX = "def add(a, b):\n    return "
SUFFIX = "\n\nprint(add(1, 2))\n"


def request(**kw) -> FimRequest:
    fields = dict(model="m", prefix=PREFIX, suffix=SUFFIX, max_tokens=16)
    fields.update(kw)
    return FimRequest(**fields)


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        (
            "deepseek",
            b"<\xef\xbd\x9cfim\xe2\x96\x81begin\xef\xbd\x9c>def add(a, b):\n    return "
            b"<\xef\xbd\x9cfim\xe2\x96\x81hole\xef\xbd\x9c>\n\nprint(add(1, 2))\n"
            b"<\xef\xbd\x9cfim\xe2\x96\x81end\xef\xbd\x9c>",
        ),
        (
            "qwen",
            b"<|fim_prefix|>def add(a, b):\n    return <|fim_suffix|>\n\nprint(add(1, 2))\n<|fim_middle|>",
        ),
        (
            "starcoder",
            b"<fim_prefix>def add(a, b):\n    return <fim_suffix>\n\nprint(add(1, 2))\n<fim_middle>",
        ),
        # CodeLlama: a space after <PRE>, before <SUF> and before <MID>, none after <SUF>.
        ("codellama", b"<PRE> def add(a, b):\n    return  <SUF>\n\nprint(add(1, 2))\n <MID>"),
        # Codestral: the suffix first, then the prefix, and the model writes on after it.
        ("codestral", b"[SUFFIX]\n\nprint(add(1, 2))\n[PREFIX]def add(a, b):\n    return "),
    ],
)
def test_each_family_renders_byte_for_byte(family, expected):
    template = templates.resolve(family, "any-model")
    assert template is not None and template.name == family
    assert template.render(request()).encode("utf-8") == expected


def test_deepseek_tokens_use_full_width_bars_and_lower_one_eighth_block():
    tokens = templates.DEEPSEEK.prefix + templates.DEEPSEEK.suffix + templates.DEEPSEEK.middle
    assert "|" not in tokens and "_" not in tokens
    assert tokens.count("\uff5c") == 6 and tokens.count("\u2581") == 3


@pytest.mark.parametrize(
    ("family", "stops"),
    [
        ("deepseek", ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "<｜end▁of▁sentence｜>")),
        (
            "qwen",
            (
                "<|endoftext|>",
                "<|fim_prefix|>",
                "<|fim_middle|>",
                "<|fim_suffix|>",
                "<|fim_pad|>",
                "<|repo_name|>",
                "<|file_sep|>",
                "<|im_start|>",
                "<|im_end|>",
            ),
        ),
        (
            "starcoder",
            ("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>", "<repo_name>", "<|endoftext|>"),
        ),
        ("codellama", ("<PRE>", "<SUF>", "<MID>", "<EOT>")),
        ("codestral", ("[PREFIX]", "[SUFFIX]")),
    ],
)
def test_each_family_has_its_stop_tokens_and_extra_stops_follow(family, stops):
    assert templates.resolve(family, "m").stops == stops
    assert templates.resolve(family, "m", ("<END>",)).stops == (*stops, "<END>")
    assert templates.resolve(family, "m", (stops[0],)).stops == stops  # no repeats


CONTEXT = (("src/util.py", "def helper():\n    return 1\n"), ("lib/io.py", "import os"))


def test_qwen_renders_other_files_with_repo_and_file_separators_in_order():
    rendered = templates.resolve("qwen", "m").render(
        request(context=CONTEXT, path="app/main.py", repo="shop")
    )
    assert rendered == (
        "<|repo_name|>shop\n"
        "<|file_sep|>src/util.py\ndef helper():\n    return 1\n"
        "<|file_sep|>lib/io.py\nimport os\n"
        "<|file_sep|>app/main.py\n"
        "<|fim_prefix|>def add(a, b):\n    return <|fim_suffix|>\n\nprint(add(1, 2))\n<|fim_middle|>"
    )


def test_starcoder2_renders_other_files_as_it_was_trained_path_after_the_prefix_token():
    rendered = templates.resolve("starcoder", "m").render(
        request(context=CONTEXT, path="app/main.py", repo="shop")
    )
    assert rendered == (
        "<repo_name>shop"
        "<file_sep>src/util.py\ndef helper():\n    return 1\n"
        "<file_sep>lib/io.py\nimport os\n"
        "<file_sep><fim_prefix>app/main.py\n"
        "def add(a, b):\n    return <fim_suffix>\n\nprint(add(1, 2))\n<fim_middle>"
    )


def test_missing_repo_and_path_get_neutral_names():
    rendered = templates.resolve("qwen", "m").render(request(context=CONTEXT[:1]))
    assert rendered.startswith("<|repo_name|>project\n<|file_sep|>src/util.py\n")
    assert "<|file_sep|>file\n<|fim_prefix|>" in rendered


@pytest.mark.parametrize("family", ["deepseek", "codellama", "codestral"])
def test_families_without_file_separators_get_no_context(family):
    template = templates.resolve(family, "m")
    assert not template.carries_context
    assert template.render(request(context=CONTEXT, path="a.py")) == template.render(request())


def test_the_fake_reads_our_prompts_back_to_prefix_suffix_and_files():
    """The fake server recovers what we meant from each rendered prompt (a second reader of the format)."""
    for name in TEMPLATE_FAMILIES:
        rendered = templates.resolve(name, "m").render(request())
        parsed = fake_templates.parse(rendered)
        assert parsed is not None and parsed.family == name, name
        assert (parsed.prefix, parsed.suffix, parsed.context) == (PREFIX, SUFFIX, ""), name
    for name in ("qwen", "starcoder"):
        rendered = templates.resolve(name, "m").render(request(context=CONTEXT, path="app/main.py"))
        parsed = fake_templates.parse(rendered)
        assert [(f["filename"], f["text"]) for f in parsed.extra] == [
            ("src/util.py", "def helper():\n    return 1"),
            ("lib/io.py", "import os"),
        ]


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("Qwen/Qwen2.5-Coder-7B", "qwen"),
        ("qwen2.5-coder:1.5b-base", "qwen"),
        ("bigcode/starcoder2-7b", "starcoder"),
        ("starcoder2:3b", "starcoder"),
        ("codellama/CodeLlama-7b-hf", "codellama"),
        ("codellama:7b-code", "codellama"),
        ("deepseek-ai/deepseek-coder-6.7b-base", "deepseek"),
        ("deepseek-coder-v2:16b", "deepseek"),
        ("mistralai/Codestral-22B-v0.1", "codestral"),
        ("codestral:22b", "codestral"),
        ("llama3.1:8b", None),
        ("Qwen/Qwen2.5-7B-Instruct", None),
        ("deepseek-chat", None),
    ],
)
def test_family_is_guessed_from_the_model_name(model, family):
    guessed = templates.guess_family(model)
    assert (guessed.name if guessed else None) == family
    assert (templates.resolve(None, model) is None) == (family is None)


def test_the_setting_wins_over_the_model_name():
    assert templates.resolve("codellama", "Qwen/Qwen2.5-Coder-7B").name == "codellama"


def test_a_format_string_template():
    template = templates.resolve("<fim>{prefix}<hole>{suffix}<mid> {{x}}", "m", ("<eot>",))
    assert template.name == "custom" and template.stops == ("<eot>",)
    # The text is inserted verbatim: braces in the code are not format fields.
    assert template.render(request(prefix="d = {a}", suffix="{b}")) == "<fim>d = {a}<hole>{b}<mid> {x}"
    assert not template.carries_context


@pytest.mark.parametrize(
    "bad",
    [
        "{prefix}",
        "{prefix}{suffix}{other}",
        "{prefix!r}{suffix}",
        "{prefix}{suffix",
        "{prefix}{prefix}{suffix}",
    ],
)
def test_unusable_format_strings_are_refused_by_the_setting_and_the_resolver(bad):
    assert templates.format_problem(bad) is not None
    assert templates.resolve(bad, "m") is None
    settings, problems = parse_settings({"template": bad})
    assert settings.template is None and len(problems) == 1 and "template" in problems[0]


def test_the_settings_list_of_families_is_the_templates_list():
    assert tuple(templates.FAMILIES) == TEMPLATE_FAMILIES
    for name in TEMPLATE_FAMILIES:
        settings, problems = parse_settings({"template": name})
        assert problems == [] and settings.template == name
