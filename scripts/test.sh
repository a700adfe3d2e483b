#!/usr/bin/env bash
# Sets up and runs the whole suite: lint, types, unit tests, integration tests on SQLite and
# on PostgreSQL, browser tests in Chromium.
#
# PostgreSQL: ACCORD_TEST_DATABASE_URL, or the local server at 127.0.0.1:5432 when it answers.
# CI sets ACCORD_TEST_DATABASE_URL, so there a missing server fails instead of being skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test

py=.venv/bin/python
step() { printf '\n==> %s\n' "$*"; }
# One pytest worker per CPU (pytest-xdist), each test file on one worker (its module fixtures,
# its scratch databases); on PostgreSQL each worker has a database of its own (tests/conftest.py).
parallel=(-n "${ACCORD_TEST_WORKERS:-auto}" --dist loadfile)

step "ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
step "mypy (workflows/, strict)"
.venv/bin/mypy
step "bandit (security lint; exceptions: [tool.bandit] in pyproject.toml and nosec comments)"
.venv/bin/bandit -q -r portal workflows -c pyproject.toml

step "unit tests and integration tests on SQLite"
env -u ACCORD_TEST_DATABASE_URL "$py" -m pytest tests/unit tests/integration -q "${parallel[@]}"

pg_url="${ACCORD_TEST_DATABASE_URL:-}"
if [ -z "$pg_url" ] && command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_url="postgresql+psycopg://postgres@127.0.0.1:5432/accord_test"
fi
if [ -n "$pg_url" ]; then
  step "integration tests on PostgreSQL"
  ACCORD_TEST_DATABASE_URL="$pg_url" "$py" -m pytest tests/integration -q "${parallel[@]}"
else
  echo "!! PostgreSQL not reachable at 127.0.0.1:5432 and ACCORD_TEST_DATABASE_URL unset: PostgreSQL pass NOT run"
fi

step "browser tests (Chromium, 390x844)"
"$py" -m pytest tests/e2e -q -m e2e

# Last, as it needs the network: its vulnerability service is reached through the package index.
step "pip-audit (known vulnerabilities in the installed dependencies)"
"$py" scripts/pip_audit.py
