"""The README documents every option with its real default."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fimls.config import Settings, field_names

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_json_block_lists_every_option_with_its_default():
    section = README.split("## Configuration", 1)[1]
    block = re.search(r"```json\n(.*?)```", section, re.S).group(1)
    assert json.loads(block) == Settings().redacted


def test_table_has_a_row_per_option():
    rows = re.findall(r"^\| `(\w+)` \|", README, re.M)
    assert rows == field_names()


ROOT = Path(__file__).resolve().parents[2]


def test_editor_snippets_are_the_files():
    for name in ("editors/neovim/init.lua", "editors/helix/languages.toml", "editors/emacs/fimls.el"):
        text = (ROOT / name).read_text(encoding="utf-8")
        assert text in README, f"README's snippet differs from {name}"


def test_editor_sections_are_in_the_readme():
    for name in (
        "editors/neovim/SETUP.md",
        "editors/SETUP-vscode.md",
        "editors/SETUP-helix.md",
        "editors/SETUP-emacs.md",
    ):
        section = (ROOT / name).read_text(encoding="utf-8").rstrip("\n")
        assert section in README, f"README is missing the text of {name}"
