#!/usr/bin/env bash
# Runs the console on this machine: web server + worker + schedules, with demo checks.
# Embedded default: SQLite in ./data and the ORM broker; set DATABASE_URL / REDIS_URL to scale out.
source "$(dirname "$0")/venv.sh"
PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"
export SITE_URL="${SITE_URL:-http://$HOST:$PORT}"
export LOG_FORMAT="${LOG_FORMAT:-console}"

python manage.py migrate --noinput -v0
python manage.py collectstatic --noinput -v0
python manage.py bootstrap --demo
python manage.py setup_schedules >/dev/null

pids=()
# Ctrl-C (SIGINT to the whole terminal group), SIGTERM to this script, or one of the two exiting:
# both get SIGTERM (the background jobs of a script ignore SIGINT), and whatever still runs after
# STOP_SECONDS is killed, so that this script always ends within about 10 s.
STOP_SECONDS=8
cleanup() {
  trap - INT TERM EXIT
  echo; echo "Stopping..."
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq $((STOP_SECONDS * 10))); do
    kill -0 "${pids[@]}" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

gunicorn opsconsole.wsgi --bind "$HOST:$PORT" --workers "${WEB_WORKERS:-2}" --graceful-timeout 5 --access-logfile - --log-level warning &
pids+=($!)
python manage.py qcluster &
pids+=($!)

echo
echo "Ops Console is running at $SITE_URL/   (admin: $SITE_URL/admin/)"
echo "Log in with the admin login printed above. Ctrl-C stops the web server and the worker."
echo
wait -n "${pids[@]}"
