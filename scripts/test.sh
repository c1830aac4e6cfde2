#!/usr/bin/env bash
# Runs the whole test suite on SQLite, then again on PostgreSQL + Redis when they answer on
# 127.0.0.1. With REQUIRE_SERVICES=1 (CI) a missing PostgreSQL or Redis is a failure.
# Extra arguments go to pytest, e.g. scripts/test.sh -k heartbeat -x
source "$(dirname "$0")/venv.sh"

PG_URL="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
REDIS_TEST_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
# The SQLite run's Redis tests (cache tools, fault tests) get a database of their own, so that
# the two runs can go side by side without touching each other's keys.
REDIS_SQLITE_URL="${TEST_REDIS_SQLITE_URL:-redis://127.0.0.1:6379/14}"

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Chromium for the browser tests (apt-get install -y chromium) ..."
    apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } || true
  fi
  [ -x /usr/bin/chromium ] || echo "note: /usr/bin/chromium is missing: browser tests will be skipped"
fi

services_up() {
  python - "$PG_URL" "$REDIS_TEST_URL" <<'PY'
import sys
import psycopg, redis
try:
    psycopg.connect(sys.argv[1], connect_timeout=3).close()
except Exception as exc:
    print(f"PostgreSQL at {sys.argv[1]} is not answering: {exc}".strip()); sys.exit(1)
try:
    redis.Redis.from_url(sys.argv[2], socket_connect_timeout=3).ping()
except Exception as exc:
    print(f"Redis at {sys.argv[2]} is not answering: {exc}"); sys.exit(1)
PY
}

# The suite writes and deletes keys in its Redis database (both runs: the SQLite run's Redis
# tests use it too), so it only takes one that is empty or that it marked on an earlier run:
# never a database someone else may be using.
redis_is_ours() {
  python - "$1" <<'PY'
import sys
import redis
MARK = "opsconsole-test-suite"
url = sys.argv[1]
try:
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    size = client.dbsize()
except Exception:
    sys.exit(0)  # not answering: the Redis tests skip, and services_up says why
if size and not client.exists(MARK):
    print(
        f"Redis database {url} holds {size} keys and no '{MARK}' key: it may be in use. "
        "Point TEST_REDIS_URL at an empty database (the suite marks it as its own), "
        "or empty this one yourself if it is yours."
    )
    sys.exit(1)
client.set(MARK, "used by the Ops Console test suite (scripts/test.sh)")
PY
}
for url in "$REDIS_TEST_URL" "$REDIS_SQLITE_URL"; do
  if ! reason=$(redis_is_ours "$url"); then
    echo "REFUSED: $reason"
    exit 1
  fi
done

run_sqlite() {
  env -u DATABASE_URL -u REDIS_URL TEST_REDIS_URL="$REDIS_SQLITE_URL" python -m pytest "$@"
}
run_services() {
  DATABASE_URL="$PG_URL" REDIS_URL="$REDIS_TEST_URL" TEST_REDIS_URL="$REDIS_TEST_URL" \
    python -m pytest "$@"
}

status=0
if ! reason=$(services_up); then
  echo "=== Test run 1/2: SQLite, ORM broker, local-memory cache ==="
  run_sqlite "$@" || status=$?
  echo
  if [ "${REQUIRE_SERVICES:-0}" = 1 ]; then
    echo "FAILED: the PostgreSQL + Redis run is required here but cannot start: $reason"
    status=1
  else
    echo "=== Test run 2/2 skipped: $reason ==="
  fi
elif [ "${TEST_SIDE_BY_SIDE:-1}" = 0 ]; then
  echo "=== Test run 1/2: SQLite, ORM broker, local-memory cache ==="
  run_sqlite "$@" || status=$?
  echo
  echo "=== Test run 2/2: PostgreSQL ($PG_URL) + Redis ($REDIS_TEST_URL) ==="
  run_services "$@" || status=$?
else
  # Most of a run is spent waiting (servers starting, subprocesses, timeouts), so the two runs
  # go side by side; the second one's output is kept and printed after the first.
  log="$(mktemp -t opsconsole-tests.XXXXXX)"
  run_services "$@" >"$log" 2>&1 &
  services_pid=$!
  # errexit is on (venv.sh): a kill of a run that already ended must not become the exit status.
  trap 'kill "$services_pid" 2>/dev/null || true; rm -f "$log"' EXIT
  echo "=== Test run 1/2: SQLite, ORM broker, local-memory cache (run 2/2 goes on beside it) ==="
  run_sqlite "$@" || status=$?
  wait "$services_pid" || status=$?
  echo
  echo "=== Test run 2/2: PostgreSQL ($PG_URL) + Redis ($REDIS_TEST_URL) ==="
  cat "$log"
fi
exit $status
