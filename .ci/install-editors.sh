#!/usr/bin/env bash
# Install what tests/editors needs on a fresh Debian 12 machine (run as root; uses sudo
# otherwise): Emacs + Eglot (Debian's emacs-nox 28 has no built-in Eglot, elpa-eglot 1.9
# adds it), Node.js/npm if absent, and the VS Code extension's npm packages (npm ci).
# Idempotent: each step is skipped when its result is already there.
# Helix has no package here (not in Debian, PyPI or npm); its test replays Helix's
# protocol with pytest-lsp, so there is nothing to install for it.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi
export DEBIAN_FRONTEND=noninteractive

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

eglot_available() {
  emacs --batch -Q --eval "(progn (require 'package)
    (unless (require 'eglot nil t)
      (setq package-directory-list '(\"/usr/share/emacs/site-lisp/elpa\"))
      (package-initialize)
      (require 'eglot))
    (princ \"eglot-ok\"))" 2>/dev/null | grep -q eglot-ok
}

# --- Emacs + Eglot ---------------------------------------------------------------------
if ! command -v emacs >/dev/null 2>&1; then
  echo "install-editors: installing emacs-nox and elpa-eglot"
  apt_install emacs-nox elpa-eglot
elif ! eglot_available; then
  echo "install-editors: installing elpa-eglot"
  apt_install elpa-eglot
fi

# --- Node.js / npm -------------------------------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "install-editors: installing nodejs and npm"
  apt_install nodejs npm
fi

# --- VS Code extension packages ------------------------------------------------------------
ext=editors/vscode
if [ ! -f "$ext/node_modules/.package-lock.json" ] \
  || [ "$ext/package-lock.json" -nt "$ext/node_modules/.package-lock.json" ] \
  || [ "$ext/package.json" -nt "$ext/node_modules/.package-lock.json" ]; then
  echo "install-editors: npm ci in $ext"
  (cd "$ext" && npm ci --no-audit --no-fund --loglevel=error)
fi

# --- versions -----------------------------------------------------------------------------
echo "install-editors: $(emacs --version | head -n 1)"
eglot_available && echo "install-editors: eglot available"
echo "install-editors: node $(node --version), npm $(npm --version 2>/dev/null)"
echo "install-editors: vscode-languageclient $(node -p "require('./$ext/node_modules/vscode-languageclient/package.json').version"), typescript $(node -p "require('./$ext/node_modules/typescript/package.json').version")"
