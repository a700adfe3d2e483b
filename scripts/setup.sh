#!/usr/bin/env bash
# Installs what Accord needs on a fresh Debian machine: Debian packages (as root, with apt-get),
# a virtual environment with the Python dependencies, and the compiled translations.
#   scripts/setup.sh run    what the portal needs
#   scripts/setup.sh test   that, plus Chromium, the PDF tools and pg_dump (the dump test) for the tests
#   scripts/setup.sh bench  that, plus wrk for the benchmarks
set -euo pipefail
cd "$(dirname "$0")/.."

purpose="${1:-run}"
# WeasyPrint (PDFs) loads Pango, Pango's FreeType/fontconfig backend and HarfBuzz's subsetter.
packages=(fonts-noto-cjk libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0)
case "$purpose" in
  run) ;;
  test) packages+=(chromium poppler-utils postgresql-client) ;;
  bench) packages+=(chromium poppler-utils postgresql-client wrk) ;;
  *) echo "usage: $0 run|test|bench" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "These Debian packages are missing; install them as root, then run this again:" >&2
    echo "  apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

python=""
for candidate in python3 python3.11 python3.12 python3.13; do
  if "$candidate" -c "import sys; sys.exit(sys.version_info < (3, 11))" 2>/dev/null; then
    python="$candidate"; break
  fi
done
[ -n "$python" ] || { echo "Python 3.11 or newer is needed (with venv)." >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $python"
  "$python" -m venv .venv
fi
# Reinstall only when pyproject.toml changed since the last install.
stamp=.venv/.accord-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> pip install (this takes a minute the first time)"
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c 'import flask, sqlalchemy, alembic, huey, playwright' # fail loudly if pip did
  touch "$stamp"
fi

.venv/bin/pybabel compile -d translations >/dev/null
