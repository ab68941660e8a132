# Sourced by scripts/demo and scripts/test: create .venv from Python >= 3.11 and install netbus.
# Usage: ensure_venv "<pip extras spec>"   e.g. ensure_venv ".[test]"
set -euo pipefail

find_python() {
  for candidate in "${NETBUS_PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  echo "netbus needs Python >= 3.11 (set NETBUS_PYTHON=/path/to/python3.11)" >&2
  return 1
}

ensure_venv() {
  local spec="$1" root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  cd "$root"
  if [ ! -x .venv/bin/python ]; then
    "$(find_python)" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
  fi
  .venv/bin/python -m pip install -q -e "$spec"
}
