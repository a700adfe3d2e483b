#!/usr/bin/env bash
# Sets up, migrates, seeds the demo data and runs Accord on the embedded defaults
# (SQLite and Huey's SQLite store under instance/), with a Huey consumer beside the web server.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run

export ACCORD_ENV="${ACCORD_ENV:-development}"
port="${ACCORD_PORT:-5000}"
flask=(.venv/bin/flask --app wsgi)

# Online payments against a local Stripe stand-in unless real keys are configured.
stripe_pid=""
if [ -z "${ACCORD_STRIPE_SECRET_KEY:-}" ]; then
  stripe_port="${ACCORD_LOCALSTRIPE_PORT:-8420}"
  .venv/bin/python scripts/localstripe_server.py --port "$stripe_port" &
  stripe_pid=$!
  export ACCORD_STRIPE_SECRET_KEY="sk_test_accord_demo"
  export ACCORD_STRIPE_PUBLISHABLE_KEY="pk_test_accord_demo"
  export ACCORD_STRIPE_WEBHOOK_SECRET="whsec_accord_demo"
  export ACCORD_STRIPE_API_BASE="http://127.0.0.1:$stripe_port"
  export ACCORD_STRIPE_JS_URL="http://127.0.0.1:$stripe_port/js.stripe.com/v3/"
fi

"${flask[@]}" db upgrade
"${flask[@]}" demo seed
# Today's collections run (stages, interest, fees, the strategy's actions); a rerun changes nothing.
"${flask[@]}" collections run

.venv/bin/huey_consumer portal.tasks.huey -w 2 -k thread -m 1 -f -q &
consumer=$!
.venv/bin/gunicorn -w 2 -b "127.0.0.1:$port" wsgi:app &
web=$!
trap 'kill "$web" "$consumer" $stripe_pid 2>/dev/null; wait "$web" "$consumer" $stripe_pid 2>/dev/null' EXIT INT TERM

for _ in $(seq 50); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
if [ -n "$stripe_pid" ]; then
  # localstripe keeps webhook registrations in memory: register Accord's endpoint at each start.
  curl -fsS -X POST "$ACCORD_STRIPE_API_BASE/_config/webhooks/accord" -H 'Content-Type: application/json' \
    -d "{\"url\": \"http://127.0.0.1:$port/webhooks/stripe\", \"secret\": \"$ACCORD_STRIPE_WEBHOOK_SECRET\"}" \
    >/dev/null && echo "==> localstripe on $ACCORD_STRIPE_API_BASE (test card 4242 4242 4242 4242; 3-D Secure 4000 0025 0000 3155)"
fi
cat <<MSG

  Accord is running:  http://127.0.0.1:$port/
  Borrower sign-in:   http://127.0.0.1:$port/signin
    a reference and date of birth are printed by "demo seed" above;
    the 6-digit code is in the development outbox: http://127.0.0.1:$port/dev/outbox
  Staff sign-in:      http://127.0.0.1:$port/staff/login
    e-mail            admin@demo.accord.example (or agent@, supervisor@, collector@, finance@)
    password          accord-demo-2026
    6-digit code      .venv/bin/flask --app wsgi demo totp admin@demo.accord.example
  Stop with Ctrl-C.

MSG
wait "$web"
