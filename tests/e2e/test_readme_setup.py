"""The README's first command, verbatim, in a fresh HOME against the fake DeepSeek.

It installs fimls from PyPI's packages into a virtual environment of its own, so it needs
the package index (as the README's reader does). A second run hides ``ensurepip`` the way
Debian and Ubuntu do without python3-venv, so the installer fetches pip itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEST_KEY, server_env
from fake_deepseek import Reply

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def first_block() -> str:
    setup = README.split("## Set-up", 1)[1]
    return re.search(r"```sh\n(.*?)```", setup, re.S).group(1).strip()


def fresh_home(tmp_path: Path, fake, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    env = server_env(fake, **extra)
    env.update(HOME=str(home), PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin")
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "VIRTUAL_ENV", "PYTHONPATH"):
        env.pop(name, None)
    env.update(extra)
    # Packages come from the index, as for the reader; a shared cache only saves time.
    env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    return env


def run_first_block(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = first_block()
    assert command.startswith(
        "python3 scripts/install.py && DEEPSEEK_API_KEY=sk-... ~/.local/bin/fimls complete"
    )
    # The reader's key is the test key; the fake stands in for DeepSeek (DEEPSEEK_BASE_URL).
    command = command.replace("sk-...", TEST_KEY)
    return subprocess.run(
        ["sh", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.timeout(900)  # a first install from the package index
@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_the_readme_first_command_works_in_a_fresh_home(tmp_path: Path, fake):
    fake.default = Reply(text="n")
    env = fresh_home(tmp_path, fake)
    result = run_first_block(tmp_path, env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "n\n"  # the suggestion at examples/fib.py:7:16
    home = Path(env["HOME"])
    assert (
        home / ".local" / "bin" / "fimls"
    ).resolve() == home / ".local" / "share" / "fimls" / "bin" / "fimls"
    assert "is not on PATH" in result.stderr  # it says so, and the command used the full path
    [request] = fake.fim_requests()
    assert request.authorized and request.body["prompt"].endswith("if n < 2:\n        return ")


# Debian's Python without python3-venv: creating a venv with pip fails in ensurepip.
NO_ENSUREPIP = """
import runpy, subprocess, sys, venv
def missing(self, context):
    raise subprocess.CalledProcessError(1, [context.env_exec_cmd, "-m", "ensurepip"])
venv.EnvBuilder._setup_pip = missing
sys.argv = ["scripts/install.py"]
runpy.run_path("scripts/install.py", run_name="__main__")
"""


@pytest.mark.timeout(900)
def test_the_installer_fetches_pip_where_ensurepip_is_missing(tmp_path: Path, fake):
    fake.default = Reply(text="n")
    env = fresh_home(tmp_path, fake)
    result = subprocess.run(
        [sys.executable, "-c", NO_ENSUREPIP], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "fetching pip from PyPI" in result.stderr
    home = Path(env["HOME"])
    assert os.access(home / ".local" / "share" / "fimls" / "bin" / "pip", os.X_OK)
    done = subprocess.run(
        [str(home / ".local" / "bin" / "fimls"), "complete", "examples/fib.py:7:16"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout == "n\n", done.stderr
