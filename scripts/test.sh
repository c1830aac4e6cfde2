#!/usr/bin/env bash
# Runs the whole test suite on SQLite, then again on PostgreSQL + Redis when they answer on
# 127.0.0.1. With REQUIRE_SERVICES=1 (CI) a missing PostgreSQL or Redis is a failure.
# Extra arguments go to pytest, e.g. scripts/test.sh -k heartbeat -x
source "$(dirname "$0")/venv.sh"

PG_URL="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
REDIS_TEST_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"

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
  python - "$REDIS_TEST_URL" <<'PY'
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
if ! reason=$(redis_is_ours); then
  echo "REFUSED: $reason"
  exit 1
fi
export TEST_REDIS_URL="$REDIS_TEST_URL"

status=0
echo "=== Test run 1/2: SQLite, ORM broker, local-memory cache ==="
env -u DATABASE_URL -u REDIS_URL python -m pytest "$@" || status=$?

echo
if reason=$(services_up); then
  echo "=== Test run 2/2: PostgreSQL ($PG_URL) + Redis ($REDIS_TEST_URL) ==="
  DATABASE_URL="$PG_URL" REDIS_URL="$REDIS_TEST_URL" python -m pytest "$@" || status=$?
elif [ "${REQUIRE_SERVICES:-0}" = 1 ]; then
  echo "FAILED: the PostgreSQL + Redis run is required here but cannot start: $reason"
  status=1
else
  echo "=== Test run 2/2 skipped: $reason ==="
fi
exit $status
