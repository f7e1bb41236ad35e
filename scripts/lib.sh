# Shared by scripts/up and scripts/test: make .venv and install Postroom into it.
# Reinstalls only when pyproject.toml changed since the last install.

need_python() {
  if ! command -v python3 >/dev/null; then
    echo "Postroom needs Python 3.11 or newer: apt-get install python3 python3-venv" >&2
    exit 1
  fi
  if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "Postroom needs Python 3.11 or newer; python3 is $(python3 --version)." >&2
    exit 1
  fi
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

apt_install() {
  # Debian's own packages (never a downloaded binary): python3-venv, chromium.
  as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@"
}

ensure_venv() {  # $1: extras, e.g. "[dev]" or ""
  need_python
  if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv 2>/dev/null; then
      rm -rf .venv
      echo "Installing python3-venv (Debian ships Python without venv)…"
      apt_install python3-venv || { echo "Could not install python3-venv: run apt-get install python3-venv" >&2; exit 1; }
      python3 -m venv .venv
    fi
  fi
  local stamp=".venv/.postroom-installed$1"
  local want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "Installing Postroom$1 into .venv…"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".$1"
    echo "$want" > "$stamp"
  fi
}
