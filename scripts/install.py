"""Install fimls into a virtual environment of its own, with only Python 3 (3.11+) on the machine.

    python3 scripts/install.py            # ~/.local/share/fimls, command at ~/.local/bin/fimls
    python3 scripts/install.py --venv .venv --editable --extras test --no-link   # for development

Where ``ensurepip`` is missing (Debian and Ubuntu without the python3-venv package), the
environment is made without pip and pip is fetched from PyPI as a wheel, which runs as is.
Standard library only; nothing outside the chosen folders is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MINIMUM = (3, 11)


def data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def python_of(env: Path) -> Path:
    return env / ("Scripts" if os.name == "nt" else "bin") / ("python.exe" if os.name == "nt" else "python")


def has_pip(python: Path) -> bool:
    return subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True).returncode == 0


def pip_wheel(folder: Path) -> Path:
    """The newest pip wheel from PyPI, saved in ``folder``."""
    index = "https://pypi.org/pypi/pip/json"
    with urllib.request.urlopen(index, timeout=60) as answer:
        release = json.load(answer)
    wheel = next(f for f in release["urls"] if f["packagetype"] == "bdist_wheel")
    target = folder / wheel["filename"]
    with urllib.request.urlopen(urllib.parse.urljoin(index, wheel["url"]), timeout=120) as answer:
        target.write_bytes(answer.read())
    return target


def make_env(env: Path) -> Path:
    """A virtual environment at ``env`` with pip in it; returns its python."""
    python = python_of(env)
    if not python.exists():
        try:
            venv.create(env, with_pip=True)
        except subprocess.CalledProcessError:  # ensurepip is not installed
            venv.create(env, with_pip=False, clear=True)
    if not has_pip(python):
        print("install: this Python has no ensurepip; fetching pip from PyPI", file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            wheel = pip_wheel(Path(tmp))
            # A pip wheel runs as is: it installs itself.
            subprocess.run([str(python), str(wheel / "pip"), "install", "--quiet", str(wheel)], check=True)
    return python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--venv", type=Path, default=data_home() / "fimls", help="where the environment goes")
    parser.add_argument(
        "--bin", type=Path, default=Path.home() / ".local" / "bin", help="where `fimls` is linked"
    )
    parser.add_argument("--no-link", action="store_true", help="do not link the command into --bin")
    parser.add_argument("--editable", action="store_true", help="install this checkout in editable mode")
    parser.add_argument("--extras", default="", help="extras to install too, e.g. test")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if sys.version_info < MINIMUM:
        print(f"install: fimls needs Python {'.'.join(map(str, MINIMUM))} or newer", file=sys.stderr)
        return 1
    python = make_env(args.venv.expanduser())
    target = f"{ROOT}[{args.extras}]" if args.extras else str(ROOT)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *(["--editable"] if args.editable else []), target], check=True)
    command = python.parent / "fimls"
    if not args.no_link:
        link = args.bin.expanduser() / "fimls"
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(command)
        command = link
        on_path = str(link.parent) in os.environ.get("PATH", "").split(os.pathsep)
        if not args.quiet and not on_path:
            print(
                f"install: {link.parent} is not on PATH; add it, or point your editor at {link}",
                file=sys.stderr,
            )
    if not args.quiet:
        print(f"install: fimls is at {command}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
