"""Deny list and ignore files (gitignore syntax)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fimls.backends import KeyCommandError, run_key_command
from fimls.privacy import Privacy, compile_rule
from fimls.urls import insecure_reason


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.log", "a/b/c.log", True),
        ("*.log", "c.log.txt", False),
        ("/build", "build/x.py", True),
        ("/build", "src/build/x.py", False),
        ("build/", "src/build/x.py", True),
        ("build/", "build", False),  # directory-only patterns do not match a file
        ("docs/**/*.md", "docs/a/b/c.md", True),
        ("docs/**/*.md", "docs/c.md", True),
        ("**/secret", "x/y/secret", True),
        ("a?c", "abc", True),
        ("[ab]x", "bx", True),
        ("[!ab]x", "bx", False),
        ("\\#hash", "#hash", True),
    ],
)
def test_gitignore_rules(pattern, path, expected):
    rule = compile_rule(pattern)
    assert rule is not None
    assert rule.matches(tuple(path.split("/"))) is expected


def test_comments_and_blanks_are_not_rules():
    assert compile_rule("# comment") is None
    assert compile_rule("   ") is None


@pytest.mark.parametrize(
    "name",
    [
        ".env",
        ".env.local",
        "prod.env",
        "server.pem",
        "tls.key",
        "id_rsa",
        "id_ed25519.pub",
        ".ssh/config",
        ".aws/credentials",
        ".netrc",
        "vault.kdbx",
        "deep/inside/.gnupg/x",
    ],
)
def test_deny_list(tmp_path: Path, name):
    privacy = Privacy([tmp_path.as_uri()])
    assert (
        privacy.reason_to_block((tmp_path / name).as_uri(), "plaintext") == "matches the built-in deny list"
    )


def test_deny_list_outside_workspace_and_normal_files(tmp_path: Path):
    privacy = Privacy([tmp_path.as_uri()])
    assert privacy.reason_to_block("file:///home/someone/.ssh/config", "ssh") is not None
    assert privacy.reason_to_block((tmp_path / "src" / "main.py").as_uri(), "python") is None
    assert privacy.reason_to_block("untitled:Untitled-1", "python") is None


def test_ignore_files_and_negation(tmp_path: Path):
    (tmp_path / ".fimlsignore").write_text("# private\nsecret_stuff/\n*.sql\n!keep.sql\n", encoding="utf-8")
    (tmp_path / ".aiignore").write_text("/notes.md\n!.env.example\n", encoding="utf-8")
    privacy = Privacy([tmp_path.as_uri()])

    def blocked(rel: str) -> bool:
        return privacy.reason_to_block((tmp_path / rel).as_uri(), "x") is not None

    assert blocked("secret_stuff/a.py")
    assert blocked("db/dump.sql")
    assert not blocked("db/keep.sql")
    assert blocked("notes.md") and not blocked("sub/notes.md")
    assert not blocked(".env.example")  # re-allowed by the workspace
    assert blocked(".env")


def test_language_enable_list():
    privacy = Privacy([], languages=["python"])
    assert privacy.reason_to_block("file:///x.py", "python") is None
    assert "not enabled" in privacy.reason_to_block("file:///x.md", "markdown")


@pytest.mark.parametrize(
    ("url", "allow", "refused"),
    [
        ("https://api.deepseek.com", False, False),
        ("http://127.0.0.1:8765", False, False),
        ("http://localhost:1", False, False),
        ("http://[::1]:1", False, False),
        ("http://api.example.com", False, True),
        ("http://10.0.0.5:8000", False, True),
        ("http://api.example.com", True, False),
        ("ftp://example.com", True, True),
    ],
)
def test_insecure_http_is_refused(url, allow, refused):
    assert (insecure_reason(url, allow) is not None) is refused


def test_key_command(tmp_path: Path):
    assert run_key_command("printf 'sk-from-command\\nsecond line\\n'") == "sk-from-command"
    with pytest.raises(KeyCommandError, match="exit code 3"):
        run_key_command("sh -c 'echo sk-leak; exit 3'")
    with pytest.raises(KeyCommandError, match="printed nothing"):
        run_key_command("true")
    with pytest.raises(KeyCommandError, match="could not run"):
        run_key_command(str(tmp_path / "no-such-program"))
