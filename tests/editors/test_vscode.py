"""VS Code: the extension in editors/vscode.

* package.json mirrors every server option as a `fimls.*` setting with the server's
  defaults (no drift between fimls.config and the extension), and extension.ts and the
  wire test list exactly the server's option names;
* the machine-level settings (what runs, where code and keys go) are machine-scoped and
  read from the user settings only; test/host-smoke.mjs proves on the wire that a
  workspace's values never reach the server and that these settings travel only as
  initializationOptions;
* the extension type-checks and builds (`npm run compile`, i.e. tsc), and the README's
  `npx @vscode/vsce package` builds a .vsix (offline: vsce is a pinned dev dependency)
  that git ignores;
* test/wire.mjs, a Node client on vscode-languageserver-protocol (the layer under
  vscode-languageclient 11), drives a real fimls with VS Code's capabilities against a
  fake DeepSeek: inline completion (Automatic and Invoked), classic completion,
  UTF-16 positions after an emoji and CJK text, $/cancelRequest, fimls.status.

VS Code itself cannot run here (@vscode/test-electron cannot download it). Node and the
npm packages come from .ci/install-editors.sh (`npm ci`); without them the build and
wire tests skip locally and fail under CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

import fimls.config as fimls_config
from fimls.config import Multiline, Settings, field_names

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
from fake_deepseek import FakeDeepSeek, Reply  # noqa: E402

VSCODE = REPO / "editors" / "vscode"
PACKAGE = json.loads((VSCODE / "package.json").read_text(encoding="utf-8"))
REPLIES = json.loads((VSCODE / "test" / "replies.json").read_text(encoding="utf-8"))["replies"]
CLIENT_ONLY = {"serverPath", "serverArgs", "completionMenu", "trace.server"}
# Where code and keys go: the user's machine-level choice, never a workspace's.
MACHINE_SERVER = {"backend", "baseUrl", "apiKey", "apiKeyCommand", "apiKeyEnv", "allowInsecureHttp"} | set(
    getattr(fimls_config, "MACHINE_ONLY", ())
)
MACHINE_LEVEL = MACHINE_SERVER | {"serverPath", "serverArgs"}
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}

BACKENDS = ["deepseek", "openai-compatible", "ollama", "llamacpp", "codestral", "raw", "vllm"]
SERVER_OPTIONS = set(field_names())


def _missing(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI must run .ci/install-editors.sh first)")
    pytest.skip(f"{why}; run .ci/install-editors.sh")


@pytest.fixture(scope="module")
def npm() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _missing("node/npm are not installed")
    if not (VSCODE / "node_modules" / "vscode-languageclient").is_dir():
        _missing("editors/vscode/node_modules is missing (npm ci)")
    assert npm is not None
    return npm


# -- package.json / sources ------------------------------------------------------------------


def test_manifest_basics() -> None:
    assert PACKAGE["name"] == "fimls"
    assert PACKAGE["engines"]["vscode"] == "^1.91.0"
    assert PACKAGE["main"] == "./out/extension.js"
    assert PACKAGE["activationEvents"] == ["onStartupFinished"]
    assert PACKAGE["dependencies"] == {"vscode-languageclient": "11.0.0"}
    dev = PACKAGE["devDependencies"]
    assert dev["@types/vscode"] == "1.91.0"
    assert dev["@types/node"].startswith("20.")
    for name, version in {**PACKAGE["dependencies"], **dev}.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned: {version}"
    assert PACKAGE["scripts"]["compile"] == "tsc -p ."
    lock = json.loads((VSCODE / "package-lock.json").read_text(encoding="utf-8"))
    assert lock["packages"]["node_modules/vscode-languageclient"]["version"] == "11.0.0"
    commands = {c["command"] for c in PACKAGE["contributes"]["commands"]}
    # The client registers the server's own commands (fimls.status, ...) by name already.
    assert "fimls.showStatus" in commands
    assert not commands & {"fimls.status", "fimls.balance", "fimls.models"}


def test_settings_mirror_every_server_option() -> None:
    props: dict[str, Any] = PACKAGE["contributes"]["configuration"]["properties"]
    keys = {key.removeprefix("fimls.") for key in props}
    assert all(key.startswith("fimls.") for key in props)
    assert keys - CLIENT_ONLY == SERVER_OPTIONS
    assert props["fimls.serverPath"]["default"] == "fimls"
    assert props["fimls.serverArgs"]["default"] == []

    defaults = Settings().redacted
    for name in sorted(SERVER_OPTIONS):
        prop = props[f"fimls.{name}"]
        expected = defaults[name]
        assert prop["default"] == expected, name
        assert prop.get("description"), name
        if expected is None:
            assert "null" in prop["type"], name
        else:
            declared = prop["type"] if isinstance(prop["type"], str) else prop["type"][0]
            assert declared == JSON_TYPES[type(expected)], name
    assert props["fimls.multiline"]["enum"] == [m.value for m in Multiline]
    assert len(props["fimls.multiline"]["enumDescriptions"]) == len(Multiline)
    assert props["fimls.backend"]["enum"] == BACKENDS
    assert len(props["fimls.backend"]["enumDescriptions"]) == len(BACKENDS)
    assert set(props["fimls.backend"]["enum"]) == {kind.value for kind in fimls_config.BackendKind}
    prices = props["fimls.pricePerMillionTokens"]
    assert set(prices["properties"]) == {"input", "cachedInput", "output"}
    assert prices["additionalProperties"] is False
    assert props["fimls.templateStop"]["items"] == {"type": "string"}
    # debounceMs is the upper bound of an adaptive wait now.
    assert "longest wait" in props["fimls.debounceMs"]["description"]


def test_machine_level_settings_are_user_scope_only() -> None:
    """What runs, where code and keys go: machine scope in package.json, read from the user
    settings only in extension.ts (test_built_extension_starts_fimls shows it at run time)."""
    props: dict[str, Any] = PACKAGE["contributes"]["configuration"]["properties"]
    for key in sorted(MACHINE_LEVEL):
        assert props[f"fimls.{key}"].get("scope") == "machine", key
        assert "User settings only" in props[f"fimls.{key}"]["description"], key
    for key in sorted({k.removeprefix("fimls.") for k in props} - MACHINE_LEVEL):
        # Completion settings may differ per workspace and folder.
        assert props[f"fimls.{key}"].get("scope", "window") in {"window", "resource"}, key

    extension = (VSCODE / "src" / "extension.ts").read_text(encoding="utf-8")
    listed = _string_list(extension, "MACHINE_LEVEL: ReadonlySet<string> = new Set([", "]);")
    assert set(listed) == MACHINE_LEVEL and len(listed) == len(MACHINE_LEVEL)
    branch = re.search(r"if \(MACHINE_LEVEL\.has\(key\)\) \{\s*return info\?\.globalValue;\s*\}", extension)
    assert branch, "explicitValue must read machine-level settings from globalValue alone"
    assert "workspaceSettings(settings)" in extension, "didChangeConfiguration drops machine-level settings"
    assert "configuration: async (params, token, next)" in extension, "workspace/configuration is filtered"


def _string_list(source: str, start: str, end: str) -> list[str]:
    block = source[source.index(start) : source.index(end, source.index(start))]
    return re.findall(r"'([A-Za-z][A-Za-z0-9]*)'", block)


def test_sources_list_the_server_options() -> None:
    extension = (VSCODE / "src" / "extension.ts").read_text(encoding="utf-8")
    listed = _string_list(extension, "SERVER_OPTIONS = [", "] as const")
    assert set(listed) == SERVER_OPTIONS and len(listed) == len(SERVER_OPTIONS)
    assert "configurationSection: SECTION" in extension
    assert "registerProposedFeatures()" in extension  # the 9.x note stays
    wire = (VSCODE / "test" / "wire.mjs").read_text(encoding="utf-8")
    listed = _string_list(wire, "const OPTIONS = [", "];")
    assert set(listed) == SERVER_OPTIONS and len(listed) == len(SERVER_OPTIONS)


def test_vsix_is_git_ignored() -> None:
    """`vsce package` writes editors/vscode/fimls-<version>.vsix: build output, never committed."""
    git = shutil.which("git")
    if git is None or subprocess.run([git, "-C", str(REPO), "rev-parse"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    for path in (f"editors/vscode/fimls-{PACKAGE['version']}.vsix", "editors/vscode/other.vsix", "x.vsix"):
        proc = subprocess.run([git, "check-ignore", "--no-index", "-q", path], cwd=REPO)
        assert proc.returncode == 0, f"{path} is not ignored"
    proc = subprocess.run([git, "check-ignore", "--no-index", "-q", "editors/vscode/package.json"], cwd=REPO)
    assert proc.returncode == 1


# -- build ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compiled(npm: str) -> Path:
    """`npm run compile` (tsc) once per module; the built extension."""
    started = time.monotonic()
    proc = subprocess.run([npm, "run", "compile"], cwd=VSCODE, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built = VSCODE / "out" / "extension.js"
    assert built.is_file()
    assert built.stat().st_mtime >= time.time() - elapsed - 5, "tsc did not write out/extension.js"
    print(f"npm run compile: {elapsed:.2f} s")
    return built


def test_extension_compiles(compiled: Path) -> None:
    text = compiled.read_text(encoding="utf-8")
    assert "exports.activate" in text and "exports.deactivate" in text


def test_built_extension_starts_fimls(compiled: Path, tmp_path: Path) -> None:
    """out/extension.js under a stand-in `vscode` module (test/host-smoke.mjs)."""
    node = shutil.which("node")
    assert node is not None
    wrapper = tmp_path / "fimls"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m fimls "$@"\n')
    wrapper.chmod(0o755)
    fake = FakeDeepSeek(api_key="sk-test").start()
    try:
        env = {
            **os.environ,
            "DEEPSEEK_BASE_URL": fake.url,
            "DEEPSEEK_API_KEY": "sk-test",
            "FIMLS_SERVER_PATH": str(wrapper),
            "FIMLS_MACHINE_LEVEL": json.dumps(sorted(MACHINE_LEVEL)),
        }
        started = time.monotonic()
        proc = subprocess.run(
            [node, "test/host-smoke.mjs"], cwd=VSCODE, env=env, capture_output=True, text=True, timeout=120
        )
        elapsed = time.monotonic() - started
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "FAIL" not in proc.stdout
        assert json.loads(proc.stdout.strip().splitlines()[-1])["failures"] == 0
        for what in ("machine-level settings read from the user settings only", "machine-level change"):
            assert f"ok   {what}" in proc.stdout, what
        print(f"host-smoke.mjs: {elapsed:.2f} s")
    finally:
        fake.stop()


def test_vsce_packages_the_extension(compiled: Path, tmp_path: Path) -> None:
    """The README's `npx @vscode/vsce package ...`, offline: vsce is a pinned dev dependency."""
    npx = shutil.which("npx")
    assert npx is not None
    if not (VSCODE / "node_modules" / "@vscode" / "vsce").is_dir():
        _missing("@vscode/vsce is not installed (npm ci)")
    vsix = VSCODE / f"fimls-{PACKAGE['version']}.vsix"
    vsix.unlink(missing_ok=True)
    env = {**os.environ, "npm_config_offline": "true", "npm_config_update_notifier": "false"}
    command = [npx, "--no", "@vscode/vsce", "package", "--allow-missing-repository", "--skip-license"]
    try:
        started = time.monotonic()
        proc = subprocess.run(command, cwd=VSCODE, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert vsix.is_file(), proc.stdout
        print(f"vsce package: {time.monotonic() - started:.2f} s, {vsix.stat().st_size / 1e6:.2f} MB")
        with zipfile.ZipFile(vsix) as archive:
            names = archive.namelist()
            manifest = json.loads(archive.read("extension/package.json"))
        assert "extension/out/extension.js" in names
        assert any(n.startswith("extension/node_modules/vscode-languageclient/") for n in names)
        assert not any(n.startswith(("extension/src/", "extension/test/")) for n in names)
        dev_only = ("typescript", "@vscode/vsce", "@types/node", "@types/vscode")
        assert not any(n.startswith(tuple(f"extension/node_modules/{d}/" for d in dev_only)) for n in names)
        assert manifest["contributes"] == PACKAGE["contributes"]
        git = shutil.which("git")
        if git and subprocess.run([git, "-C", str(REPO), "rev-parse"], capture_output=True).returncode == 0:
            status = subprocess.run(
                [git, "status", "--porcelain", "--", str(vsix)], cwd=REPO, capture_output=True, text=True
            )
            assert status.stdout == "", "the .vsix shows up in git status"
    finally:
        vsix.unlink(missing_ok=True)


# -- wire test -------------------------------------------------------------------------------


def _answer(body: dict[str, Any]) -> Reply:
    prompt = str(body.get("prompt") or "")
    for reply in REPLIES:
        if prompt.endswith(reply["promptEndsWith"]):
            return Reply(text=reply["text"], delay=float(reply.get("delay", 0.0)))
    return Reply(text="")


def test_wire_protocol_like_vscode(npm: str) -> None:
    node = shutil.which("node")
    assert node is not None
    fake = FakeDeepSeek(api_key="sk-test").start()
    fake.default = _answer
    try:
        env = {
            **os.environ,
            "DEEPSEEK_BASE_URL": fake.url,
            "DEEPSEEK_API_KEY": "sk-test",
            "FIMLS_COMMAND": json.dumps([sys.executable, "-m", "fimls"]),
        }
        started = time.monotonic()
        proc = subprocess.run(
            [node, "test/wire.mjs"], cwd=VSCODE, env=env, capture_output=True, text=True, timeout=120
        )
        elapsed = time.monotonic() - started
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "FAIL" not in proc.stdout
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        assert summary["failures"] == 0 and summary["checks"] >= 30
        print(f"wire.mjs: {elapsed:.2f} s, {summary}")

        # The slow request was abandoned when VS Code cancelled it.
        requests = fake.asked()
        assert fake.wait_for(lambda: requests[-1].finished is not None, timeout=5)
        prompts = [(r.body or {}).get("prompt", "") for r in requests]
        cues = [reply["promptEndsWith"] for reply in REPLIES]
        # One request per cue, in order: typing through and the classic completion at the
        # same place reuse the first answer instead of asking again.
        assert len(prompts) == len(cues), prompts
        for prompt, cue in zip(prompts, cues, strict=True):
            assert prompt.endswith(cue), (prompt, cue)
        assert all(r.authorized for r in requests)
        assert all((r.body or {}).get("model") == "deepseek-flash" for r in requests)
        slow = requests[-1]
        assert slow.aborted or not slow.completed, "the cancelled request kept running"
        assert requests[0].body is not None and requests[0].body["suffix"].startswith(")")
    finally:
        fake.stop()


def test_setup_doc_covers_the_settings() -> None:
    setup = (REPO / "editors" / "SETUP-vscode.md").read_text(encoding="utf-8")
    assert setup.startswith("### VS Code\n")
    for key in CLIENT_ONLY | MACHINE_LEVEL:
        assert f"`fimls.{key}`" in setup, key
    assert "(#backends)" in setup
    assert "longest" in setup.split("`fimls.debounceMs`", 1)[1][:300], "debounceMs is an upper bound"
    for command in PACKAGE["contributes"]["commands"]:
        assert f"fimls: {command['title']}" in setup, command
    assert "npm ci" in setup and "npm run compile" in setup and "@vscode/vsce package" in setup
