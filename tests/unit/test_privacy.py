"""The privacy gate: deny list, ignore files (gitignore syntax via pathspec), folders, languages."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import time
from pathlib import Path, PureWindowsPath

import pytest
from pygls import uris

from fimls.backends import KeyCommandError, run_key_command
from fimls.privacy import (
    DENY_PATTERNS,
    Line,
    PrivacyGate,
    Rules,
    deny_match,
    gate_for_file,
    read_ignore_file,
    uri_to_path,
)

ROOT = Path(__file__).resolve().parents[2]


def rules(*lines: str) -> Rules:
    return Rules.compile(Line(".aiignore", number, text) for number, text in enumerate(lines, 1))


def ignored(spec: Rules, path: str) -> bool:
    verdict = spec.decide(path)
    return verdict is not None and verdict.ignored


class Problems(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)


# -- the deny list ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        ".env",
        ".env.local",
        "prod.env",
        ".envrc",
        "server.pem",
        "tls.key",
        "AuthKey_ABC.p8",
        "cert.p12",
        "id_rsa",
        "id_ed25519.pub",
        ".ssh/config",
        ".aws/credentials",
        ".azure/accessTokens.json",
        ".gnupg/pubring.kbx",
        "home/.config/gcloud/application_default_credentials.json",
        "home/.docker/config.json",
        ".kube/config",
        "kubeconfig",
        "deploy/prod.kubeconfig",
        ".netrc",
        ".my.cnf",
        ".htpasswd",
        ".vault-token",
        "vpn/office.ovpn",
        "credentials",
        "credentials.json",
        "credentials.yaml",
        "secret.yaml",
        "secrets.toml",
        "secrets/db.py",
        "api.secret",
        "terraform.tfstate",
        "terraform.tfstate.backup",
        "prod.tfvars",
        "vault.kdbx",
        "deep/inside/.gnupg/x",
    ],
)
def test_deny_list_names(tmp_path: Path, name: str):
    gate = PrivacyGate([tmp_path.as_uri()])
    reason = gate.check((tmp_path / name).as_uri(), "plaintext")
    assert reason is not None and reason.startswith("built-in deny list"), name


@pytest.mark.parametrize(
    "name", [".ENV", "SERVER.PEM", "Id_Rsa", "Prod.TFSTATE", ".SSH/config", "Credentials.JSON"]
)
def test_deny_list_ignores_case(tmp_path: Path, name: str):
    assert PrivacyGate([tmp_path.as_uri()]).check((tmp_path / name).as_uri(), "x") is not None


@pytest.mark.parametrize(
    "name",
    [
        "src/main.py",
        "README.md",
        "environment.ts",
        "env.py",
        "keys.py",
        "docker/config.json",
        ".docker/Dockerfile",
        "kubeconfig.md",
        "my.cnf",
        "tfvars.go",
        "secretary.py",
        "docs/secrets.md/../ok.py",
    ],
)
def test_ordinary_files_pass(tmp_path: Path, name: str):
    assert PrivacyGate([tmp_path.as_uri()]).check((tmp_path / name).as_uri(), "x") is None


@pytest.mark.parametrize(
    ("folder", "file"),
    [
        (".kube", "config"),
        (".ssh", "config"),
        (".aws", "config"),
        (".docker", "config.json"),
        (".azure", "azureProfile.json"),
        (".gnupg", "gpg.conf"),
        (".config/gcloud", "configurations/config_default"),
    ],
)
def test_deny_list_sees_the_whole_path_when_the_folder_is_a_secret_directory(tmp_path: Path, folder, file):
    root = tmp_path / "home" / folder
    target = root / file
    target.parent.mkdir(parents=True)
    target.write_text("x", encoding="utf-8")
    gate = PrivacyGate([root.as_uri()])
    assert gate.check(target.as_uri(), "yaml") is not None
    assert gate.check_path(target) is not None
    assert gate.in_workspace(target)  # inside the folder, and still refused


def test_security_md_lists_the_deny_list_verbatim():
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    block = re.search(r"### Built-in deny list\n.*?```gitignore\n(.*?)```", text, re.S)
    assert block is not None
    documented = [line for line in block.group(1).splitlines() if line and not line.startswith("#")]
    assert documented == list(DENY_PATTERNS)


def test_deny_match_on_windows_paths():
    assert deny_match(PureWindowsPath(r"C:\Users\x\.ENV")) == "*.env"  # the last matching line
    assert deny_match(PureWindowsPath(r"C:\Users\x\.kube\config")) == ".kube/"
    assert deny_match(PureWindowsPath(r"\\server\share\id_rsa")) == "id_rsa*"
    assert deny_match(PureWindowsPath(r"C:\Users\x\main.py")) is None


# -- URIs -------------------------------------------------------------------------


def test_windows_uris_become_windows_paths(monkeypatch):
    monkeypatch.setattr(uris, "IS_WIN", True)
    path = uri_to_path("file:///c%3A/Users/x/.env")
    assert isinstance(path, PureWindowsPath) and str(path) == r"C:\Users\x\.env"
    assert str(uri_to_path("file:///C:/Users/x/a%20b.py")) == r"C:\Users\x\a b.py"
    assert str(uri_to_path("file://server/share/x.py")) == r"\\server\share\x.py"
    gate = PrivacyGate(["file:///c%3A/Users/x"])
    assert gate.check("file:///c%3A/Users/x/.ENV", "x") is not None
    assert gate.check("file:///c%3A/Users/x/src/main.py", "x") is None
    assert gate.relative_path("file:///C:/Users/x/src/main.py") == "src/main.py"


def test_posix_uris():
    assert str(uri_to_path("file:///home/a%20b/x.py")) == "/home/a b/x.py"
    assert uri_to_path("untitled:Untitled-1") is None
    assert uri_to_path("https://example.com/x") is None


def test_dot_dot_in_the_uri(tmp_path: Path):
    gate = PrivacyGate([tmp_path.as_uri()])
    assert gate.check(tmp_path.as_uri() + "/src/../.env", "x") is not None
    assert gate.check(tmp_path.as_uri() + "/src/%2e%2e/.env", "x") is not None
    (tmp_path / ".aiignore").write_text("private/\n", encoding="utf-8")
    assert gate.check(tmp_path.as_uri() + "/public/../private/a.py", "x") is not None
    assert gate.check(tmp_path.as_uri() + "/private/../public/a.py", "x") is None


@pytest.mark.parametrize(
    "uri",
    [
        "untitled:.env",
        "vscode-remote://ssh-remote+host/home/u/project/.env",
        "git:/home/u/project/.ENV?%7B%22ref%22%3A%22HEAD%22%7D",
        "vscode-notebook-cell:/home/u/.ssh/config#W0sZmlsZQ%3D%3D",
        "sftp://host/srv/app/server.pem",
    ],
)
def test_name_rules_apply_to_other_schemes(uri: str):
    assert PrivacyGate().check(uri, "plaintext") is not None


def test_other_schemes_with_ordinary_names_pass():
    gate = PrivacyGate()
    assert gate.check("untitled:Untitled-1", "python") is None
    assert gate.check("vscode-remote://ssh-remote+host/home/u/project/main.py", "python") is None


def test_ignore_files_apply_to_other_schemes_inside_a_folder(tmp_path: Path):
    (tmp_path / ".aiignore").write_text("private/\n", encoding="utf-8")
    gate = PrivacyGate([tmp_path.as_uri()])
    assert gate.check(f"vscode-notebook-cell:{tmp_path}/private/a.ipynb#cell1", "python") is not None
    assert gate.check(f"vscode-notebook-cell:{tmp_path}/public/a.ipynb#cell1", "python") is None


def test_nul_in_the_path_is_refused(tmp_path: Path):
    gate = PrivacyGate([tmp_path.as_uri()])
    assert gate.check(tmp_path.as_uri() + "/a%00.py", "x") is not None


# -- symlinks and aliases --------------------------------------------------------------


def test_symlink_to_a_secret_is_refused(tmp_path: Path):
    secret = tmp_path / "outside" / ".ssh" / "id_ed25519"
    secret.parent.mkdir(parents=True)
    secret.write_text("k", encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").symlink_to(secret)
    gate = PrivacyGate([work.as_uri()])
    reason = gate.check((work / "notes.txt").as_uri(), "plaintext")
    assert reason is not None and "id_ed25519" in reason
    # The link's own name counts too.
    (work / "plain.txt").write_text("x", encoding="utf-8")
    (work / ".env").symlink_to(work / "plain.txt")
    assert gate.check((work / ".env").as_uri(), "plaintext") is not None


def test_exact_negation_of_a_link_does_not_re_allow_its_secret_target(tmp_path: Path):
    secret = tmp_path / "keys" / "server.pem"
    secret.parent.mkdir()
    secret.write_text("k", encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    (work / "cert.pem").symlink_to(secret)
    (work / ".aiignore").write_text("!cert.pem\n", encoding="utf-8")
    assert PrivacyGate([work.as_uri()]).check((work / "cert.pem").as_uri(), "x") is not None


def test_ignore_rules_apply_through_an_aliased_folder(tmp_path: Path):
    real = tmp_path / "real"
    (real / "private").mkdir(parents=True)
    (real / ".aiignore").write_text("private/\n", encoding="utf-8")
    alias = tmp_path / "alias"
    alias.symlink_to(real)
    for folder in (real, alias):
        gate = PrivacyGate([folder.as_uri()])
        for base in (real, alias):
            assert gate.check((base / "private" / "a.py").as_uri(), "python") is not None, (folder, base)
            assert gate.check((base / "src" / "a.py").as_uri(), "python") is None, (folder, base)


# -- ignore files: gitignore semantics --------------------------------------------


@pytest.mark.parametrize(
    ("lines", "path", "expected"),
    [
        (["*.log"], "a/b/c.log", True),
        (["*.log"], "c.log.txt", False),
        (["/build"], "build/x.py", True),
        (["/build"], "src/build/x.py", False),
        (["build/"], "src/build/x.py", True),
        (["build/"], "build", False),  # directory-only patterns do not match a file
        (["docs/**/*.md"], "docs/a/b/c.md", True),
        (["docs/**/*.md"], "docs/c.md", True),
        (["a?c"], "abc", True),
        (["[ab]x"], "bx", True),
        (["[!ab]x"], "bx", False),
        (["\\#hash"], "#hash", True),
        (["*.sql", "!keep.sql"], "db/keep.sql", False),
        # A negation cannot re-include a file whose parent directory is excluded.
        (["build/", "!build/keep.txt"], "build/keep.txt", True),
        (["build", "!keep.log"], "build/keep.log", True),
        (["*", "!*.c"], "src/a.c", True),
        (["x/y/", "!x/"], "x/y/z", True),
        # ... but it can where only the directory's contents are excluded.
        (["build/*", "!build/keep.txt"], "build/keep.txt", False),
        (["abc/**", "!abc/def.txt"], "abc/def.txt", False),
        (["*", "!*/", "!*.c"], "src/a.c", False),
        (["d/**", "!d/sub/", "!d/sub/**"], "d/sub/f.txt", False),
    ],
)
def test_gitignore_semantics(lines, path, expected):
    assert ignored(rules(*lines), path) is expected


# Patterns ending in "**/" are left out: pathspec reads "a/**/" as "a/" (it also matches "a" itself), which
# git does not.
_GIT_PATTERNS = [
    "build/", "build", "!build/", "!build", "build/*", "build/**", "!build/keep.txt", "!keep.txt", "*", "!*/",
    "!*.c", "*.c", "/a", "a/", "!a/", "a/**", "!a/b/", "a/b/", "!a/b/**", "**/b", "b/", "!b", "*/", "/a/b",
    "!a/b/c.c", "a/**/c.c", "**/*.txt", "!*.txt", "keep.txt", "a/*", "!a/*/", "*/b", "!/build/keep.txt", "**",
    "a/b", "[ab]/", "!?/", "a/b/c.c/", "/*", "!/*/", "*.[ch]", "b/**/c.c", "!b/**", "x/", "!x/build/",
]  # fmt: skip
_GIT_PATHS = [
    "build/keep.txt", "build/x/keep.txt", "a/b/c.c", "a/b/keep.txt", "a/c.c", "a/b", "keep.txt",
    "x/build/keep.txt", "a/x/b/c.txt", "b/a/c.c", "c.c", "x/build/y/z.c", "a/a/a/a.c", "b/x/y/c.c",
]  # fmt: skip


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_ignore_rules_agree_with_git(tmp_path: Path):
    """Random ignore files from the patterns above, each checked against ``git check-ignore``."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    rng = random.Random(20240615)
    disagreements = []
    for _ in range(150):
        lines = rng.sample(_GIT_PATTERNS, rng.randint(1, 5))
        (tmp_path / ".gitignore").write_text("\n".join(lines) + "\n", encoding="utf-8")
        git = subprocess.run(
            ["git", "check-ignore", "--no-index", "--stdin"],
            cwd=tmp_path,
            input="\n".join(_GIT_PATHS) + "\n",
            capture_output=True,
            text=True,
            check=False,
        )
        by_git = set(git.stdout.splitlines())
        spec = rules(*lines)
        disagreements += [(lines, path) for path in _GIT_PATHS if ignored(spec, path) != (path in by_git)]
    assert disagreements == []


def test_ignore_file_bom_crlf_and_bad_lines(tmp_path: Path):
    path = tmp_path / ".aiignore"
    path.write_bytes(b"\xef\xbb\xbf*.sql\r\n# comment\r\nbad\xff\xfe/\r\n[z-a]\r\n\r\nprivate/\r\n")
    problems: list[str] = []
    lines = read_ignore_file(path, problems)
    assert [(line.number, line.text) for line in lines] == [(1, "*.sql"), (6, "private/")]
    assert len(problems) == 2
    assert "line 3 is not UTF-8" in problems[0] and "line 4 '[z-a]'" in problems[1]
    assert read_ignore_file(tmp_path / "missing", problems) == []


def test_malformed_ignore_file_gives_one_message_and_the_rest_applies(tmp_path: Path):
    (tmp_path / ".fimlsignore").write_bytes(b"*.sql\n[z-a]\n\xc3\x28\nprivate/\n[b-a]x\n")
    problems = Problems()
    gate = PrivacyGate([tmp_path.as_uri()], on_problem=problems)
    assert gate.check((tmp_path / "db" / "q.sql").as_uri(), "sql") is not None
    assert gate.check((tmp_path / "private" / "a.py").as_uri(), "python") is not None
    assert gate.check((tmp_path / "src" / "a.py").as_uri(), "python") is None
    assert len(problems) == 1
    assert all(f"line {n}" in problems[0] for n in (2, 3, 5)) and ".fimlsignore" in problems[0]


def test_unreadable_ignore_file_blocks_its_folder(tmp_path: Path):
    (tmp_path / ".aiignore").mkdir()  # exists, cannot be read as a file
    problems = Problems()
    gate = PrivacyGate([tmp_path.as_uri()], on_problem=problems)
    assert "cannot read" in (gate.check((tmp_path / "a.py").as_uri(), "python") or "")
    assert len(problems) == 1
    (tmp_path / ".aiignore").rmdir()
    assert gate.check((tmp_path / "a.py").as_uri(), "python") is None


def test_negations_and_the_deny_list(tmp_path: Path):
    (tmp_path / ".aiignore").write_text(
        "*.json\n!*.json\n!.env.example\n!config/dev.env\n!*.pem\n!secrets/\n", encoding="utf-8"
    )
    problems = Problems()
    gate = PrivacyGate([tmp_path.as_uri()], on_problem=problems)

    def check(rel: str) -> str | None:
        return gate.check((tmp_path / rel).as_uri(), "x")

    assert check("package.json") is None  # a broad negation re-includes ordinary files
    reason = check("credentials.json")  # ... but never a deny-listed one
    assert reason is not None and "'!*.json'" in reason and "exact path" in reason
    assert check("server.pem") is not None
    assert check("secrets/a.py") is not None  # "!secrets/" names a directory, not the file
    assert problems == []
    assert check(".env.example") is None  # named exactly: re-allowed, with a warning
    assert check("config/dev.env") is None
    assert check("other/dev.env") is not None  # anchored: only that path
    assert len(problems) == 2 and ".env.example" in problems[0] and "deny list" in problems[0]
    check(".env.example")
    gate.set_languages(None)  # clears the decision cache; the warning is not repeated
    check(".env.example")
    assert len(problems) == 2


def test_exact_negation_cannot_reach_into_an_excluded_directory(tmp_path: Path):
    (tmp_path / ".aiignore").write_text("config/\n!config/dev.env\n", encoding="utf-8")
    problems = Problems()
    gate = PrivacyGate([tmp_path.as_uri()], on_problem=problems)
    assert gate.check((tmp_path / "config" / "dev.env").as_uri(), "x") is not None
    assert problems == []


def test_both_ignore_files_apply_in_order(tmp_path: Path):
    (tmp_path / ".fimlsignore").write_text("*.sql\n", encoding="utf-8")
    (tmp_path / ".aiignore").write_text("!keep.sql\n/notes.md\n", encoding="utf-8")
    gate = PrivacyGate([tmp_path.as_uri()])
    reason = gate.check((tmp_path / "db" / "q.sql").as_uri(), "sql")
    assert reason is not None and ".fimlsignore line 1" in reason
    assert gate.check((tmp_path / "db" / "keep.sql").as_uri(), "sql") is None
    assert gate.check((tmp_path / "notes.md").as_uri(), "markdown") is not None
    assert gate.check((tmp_path / "sub" / "notes.md").as_uri(), "markdown") is None


# -- folders --------------------------------------------------------------------------


def test_nested_folders_apply_every_containing_folders_rules(tmp_path: Path):
    outer, inner = tmp_path, tmp_path / "packages" / "app"
    inner.mkdir(parents=True)
    (outer / ".aiignore").write_text("*.sql\ngenerated/\n", encoding="utf-8")
    (inner / ".aiignore").write_text("/local/\n!keep.sql\n", encoding="utf-8")
    gate = PrivacyGate([inner.as_uri(), outer.as_uri()])
    assert gate.folders == [outer.resolve(), inner.resolve()]  # outer first

    def blocked(path: Path) -> bool:
        return gate.check(path.as_uri(), "x") is not None

    assert blocked(inner / "q.sql")  # the outer folder's rule
    assert blocked(inner / "generated" / "a.py")
    assert blocked(inner / "local" / "a.py")  # the inner folder's rule, relative to the inner folder
    assert not blocked(outer / "local" / "a.py")
    assert not blocked(inner / "keep.sql")  # the inner folder re-includes what the outer one excluded
    assert blocked(outer / "keep.sql")
    assert gate.relative_path(inner / "src" / "x.py") == "src/x.py"
    assert gate.relative_path(outer / "x.py") == "x.py"


def test_folders_added_and_removed(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (b / ".aiignore").write_text("*.txt\n", encoding="utf-8")
    gate = PrivacyGate([a.as_uri()])
    assert gate.check((b / "x.txt").as_uri(), "x") is None
    assert not gate.in_workspace(b / "x.txt")
    gate.change_folders([b.as_uri()], [])
    assert gate.check((b / "x.txt").as_uri(), "x") is not None
    assert gate.in_workspace(b / "x.txt") and gate.in_workspace((b / "x.txt").as_uri())
    gate.change_folders([], [b.as_uri()])
    assert gate.check((b / "x.txt").as_uri(), "x") is None
    assert gate.folders == [a.resolve()]
    gate.set_folders([b.as_uri()])
    assert gate.folders == [b.resolve()]


def test_ignore_files_created_edited_and_removed_after_start(tmp_path: Path):
    gate = PrivacyGate([tmp_path.as_uri()])
    uri = (tmp_path / "notes.md").as_uri()
    assert gate.check(uri, "markdown") is None
    ignore = tmp_path / ".aiignore"
    ignore.write_text("notes.md\n", encoding="utf-8")
    assert gate.check(uri, "markdown") is not None
    before = ignore.stat().st_mtime_ns
    ignore.write_text("other.md\n", encoding="utf-8")  # the same size: the mtime tells
    os.utime(ignore, ns=(before + 10_000_000, before + 10_000_000))  # coarse clocks: make it later
    assert gate.check(uri, "markdown") is None
    stamp = ignore.stat().st_mtime_ns
    ignore.write_text("*.md\n#x\n", encoding="utf-8")
    os.utime(ignore, ns=(stamp, stamp))  # even with the old mtime, the size changed
    assert gate.check(uri, "markdown") is not None
    ignore.unlink()
    assert gate.check(uri, "markdown") is None


def test_languages_and_the_cache(tmp_path: Path):
    gate = PrivacyGate([tmp_path.as_uri()], languages=["python"])
    uri = (tmp_path / "a.md").as_uri()
    assert "not enabled" in (gate.check(uri, "markdown") or "")
    assert gate.check((tmp_path / "a.py").as_uri(), "python") is None
    assert gate.check(uri, None) is None  # unknown language: only the path rules
    gate.set_languages(["python", "markdown"])
    assert gate.check(uri, "markdown") is None
    gate.set_languages(None)
    assert gate.check(uri, "anything") is None


def test_in_workspace_resolves_links(tmp_path: Path):
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (outside / "x.py").write_text("x", encoding="utf-8")
    (work / "link.py").symlink_to(outside / "x.py")
    (work / "inner.py").write_text("x", encoding="utf-8")
    gate = PrivacyGate([work.as_uri()])
    assert gate.in_workspace(work / "inner.py")
    assert gate.in_workspace(str(work / "inner.py"))
    assert not gate.in_workspace(work / "link.py")  # its bytes live outside
    assert not gate.in_workspace(work / ".." / "outside" / "x.py")
    assert not gate.in_workspace("untitled:x")
    assert not PrivacyGate().in_workspace(work / "inner.py")


def test_check_path_matches_check(tmp_path: Path, monkeypatch):
    (tmp_path / ".aiignore").write_text("private/\n", encoding="utf-8")
    gate = PrivacyGate([tmp_path.as_uri()])
    monkeypatch.chdir(tmp_path)
    assert gate.check_path(Path("private/a.py")) is not None
    assert gate.check_path(tmp_path / ".ENV") is not None
    assert gate.check_path(Path("src/a.py"), "python") is None


def test_gate_is_cheap_per_keystroke(tmp_path: Path):
    (tmp_path / ".aiignore").write_text("\n".join(f"dir{i}/" for i in range(200)) + "\n", encoding="utf-8")
    gate = PrivacyGate([tmp_path.as_uri()])
    uri = (tmp_path / "a" / "b" / "c.py").as_uri()
    gate.check(uri, "python")
    start = time.perf_counter()
    for _ in range(1000):
        assert gate.check(uri, "python") is None
    assert (time.perf_counter() - start) / 1000 < 0.002  # cached: two stats, no matching


# -- the command line ----------------------------------------------------------------


def test_gate_for_file_finds_the_workspace_folder(tmp_path: Path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".aiignore").write_text("private/\n", encoding="utf-8")
    (repo / "src" / "private").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    gate = gate_for_file(repo / "src" / "private" / "a.py")
    assert gate.folders == [repo.resolve()]
    assert gate.check_path(repo / "src" / "private" / "a.py") is not None

    marked = tmp_path / "plain" / "sub"
    marked.mkdir(parents=True)
    (tmp_path / "plain" / ".fimlsignore").write_text("", encoding="utf-8")
    assert gate_for_file(marked / "x.py").folders == [(tmp_path / "plain").resolve()]

    free = tmp_path / "free"
    (free / "d").mkdir(parents=True)
    monkeypatch.chdir(free)
    assert gate_for_file(Path("d/x.py")).folders == [free.resolve()]  # the current directory

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert gate_for_file(elsewhere / "x.py").folders == [elsewhere.resolve()]  # its own directory


# -- unrelated to privacy, kept from the old file -----------------------------------


def test_key_command(tmp_path: Path):
    assert run_key_command("printf 'sk-from-command\\nsecond line\\n'") == "sk-from-command"
    with pytest.raises(KeyCommandError, match="exit code 3"):
        run_key_command("sh -c 'echo sk-leak; exit 3'")
    with pytest.raises(KeyCommandError, match="printed nothing"):
        run_key_command("true")
    with pytest.raises(KeyCommandError, match="could not run"):
        run_key_command(str(tmp_path / "no-such-program"))
