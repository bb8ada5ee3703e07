"""The fake server reads raw FIM prompts of the known families (scripts/fake_templates.py).

The prompts are written out literally here, byte for byte, so the parser is checked
against the families' real layouts rather than against its own renderer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))

import fake_templates

PRE, SUF = "def f(x):\n    return ", "\n\nprint(f(2))\n"


@pytest.mark.parametrize(
    ("family", "prompt"),
    [
        ("deepseek", f"<｜fim▁begin｜>{PRE}<｜fim▁hole｜>{SUF}<｜fim▁end｜>"),
        ("qwen", f"<|fim_prefix|>{PRE}<|fim_suffix|>{SUF}<|fim_middle|>"),
        ("starcoder", f"<fim_prefix>{PRE}<fim_suffix>{SUF}<fim_middle>"),
        ("codellama", f"<PRE> {PRE} <SUF>{SUF} <MID>"),
        ("codestral", f"[SUFFIX]{SUF}[PREFIX]{PRE}"),
    ],
)
def test_each_family_gives_prefix_and_suffix(family: str, prompt: str) -> None:
    found = fake_templates.parse(prompt)
    assert found is not None
    assert (found.family, found.prefix, found.suffix, found.context, found.extra) == (
        family,
        PRE,
        SUF,
        "",
        [],
    )
    assert fake_templates.render(fake_templates.family_named(family), PRE, SUF) == prompt


def test_deepseek_tokens_are_the_full_width_characters() -> None:
    ascii_lookalike = f"<|fim▁begin|>{PRE}<|fim▁hole|>{SUF}<|fim▁end|>"
    assert fake_templates.parse(ascii_lookalike) is None
    assert "\uff5c" in fake_templates.DEEPSEEK.prefix and "\u2581" in fake_templates.DEEPSEEK.prefix


def test_codellama_spaces_belong_to_the_tokens() -> None:
    found = fake_templates.parse("<PRE> x = 1  <SUF> y <MID>")
    assert found is not None
    assert (found.prefix, found.suffix) == ("x = 1 ", " y")


def test_text_after_the_middle_token_continues_the_prefix() -> None:
    found = fake_templates.parse(f"<|fim_prefix|>{PRE}<|fim_suffix|>{SUF}<|fim_middle|>x *")
    assert found is not None
    assert found.prefix == PRE + "x *"


def test_qwen_repo_level_context_is_read_as_files() -> None:
    prompt = (
        "<|repo_name|>demo\n"
        "<|file_sep|>util.py\ndef helper():\n    return 2\n"
        "<|file_sep|>consts.py\nLIMIT = 3\n"
        "<|file_sep|>main.py\n"
        f"<|fim_prefix|>{PRE}<|fim_suffix|>{SUF}<|fim_middle|>"
    )
    found = fake_templates.parse(prompt)
    assert found is not None
    assert found.extra == [
        {"filename": "util.py", "text": "def helper():\n    return 2"},
        {"filename": "consts.py", "text": "LIMIT = 3"},
    ]
    assert found.context == prompt[: prompt.index("<|fim_prefix|>")]
    assert (found.prefix, found.suffix) == (PRE, SUF)


def test_starcoder_file_separators() -> None:
    files = "<repo_name>demo<file_sep>a.py\nA = 1\n<file_sep>b.py\n"
    prompt = f"{files}<fim_prefix>{PRE}<fim_suffix>{SUF}<fim_middle>"
    found = fake_templates.parse(prompt)
    assert found is not None
    assert found.extra == [{"filename": "a.py", "text": "A = 1"}]


def test_codestral_multi_file_blocks_live_in_the_prefix() -> None:
    prompt = f"[SUFFIX]{SUF}[PREFIX]+++++ lib/a.py\nA = 1\n\n+++++ lib/b.py\nB = 2\n\n+++++ main.py\n{PRE}"
    found = fake_templates.parse(prompt)
    assert found is not None
    assert (found.prefix, found.suffix) == (PRE, SUF)
    assert found.extra == [
        {"filename": "lib/a.py", "text": "A = 1"},
        {"filename": "lib/b.py", "text": "B = 2"},
    ]
    assert "B = 2" in found.context and PRE not in found.context


def test_context_without_file_separators_is_one_unnamed_chunk() -> None:
    found = fake_templates.parse(f"# other.py\nX = 1\n<｜fim▁begin｜>{PRE}<｜fim▁hole｜>{SUF}<｜fim▁end｜>")
    assert found is not None
    assert found.extra == [{"filename": "", "text": "# other.py\nX = 1\n"}]


@pytest.mark.parametrize("prompt", ["just some code\n", "<|fim_prefix|>no suffix token<|fim_middle|>"])
def test_plain_prompts_are_not_fim(prompt: str) -> None:
    assert fake_templates.parse(prompt) is None


def test_suffix_first_order_of_psm_tokens() -> None:
    found = fake_templates.parse(f"<|fim_suffix|>{SUF}<|fim_prefix|>{PRE}<|fim_middle|>")
    assert found is not None
    assert (found.prefix, found.suffix) == (PRE, SUF)


def test_render_other_files_then_parse_back() -> None:
    files = [{"filename": "a.py", "text": "A = 1"}]
    for family in fake_templates.FAMILIES:
        found = fake_templates.parse(fake_templates.render(family, PRE, SUF, files))
        assert found is not None, family.name
        assert (found.prefix, found.suffix) == (PRE, SUF), family.name
        assert "A = 1" in found.context, family.name
