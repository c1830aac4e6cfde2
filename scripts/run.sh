#!/usr/bin/env bash
# Runs the console on this machine: web server + worker + schedules, with demo checks.
# Embedded default: SQLite in ./data and the ORM broker; set DATABASE_URL / REDIS_URL to scale out.
source "$(dirname "$0")/venv.sh"
PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"
export SITE_URL="${SITE_URL:-http://$HOST:$PORT}"
export LOG_FORMAT="${LOG_FORMAT:-console}"
# Routine INFO lines (every process's start, each scheduled job's start and finish) would push
# the start-up summary out of sight within seconds: warnings and errors only, unless LOG_LEVEL
# asks for more. ACCESS_LOG=1 adds the web server's access lines.
export LOG_LEVEL="${LOG_LEVEL:-warning}"
ACCESS_LOG="${ACCESS_LOG:-0}"

# Migrate, static files, admin login, demo checks, schedules: one process. Its summary (URL,
# login, reset command, where the data is) is printed once the web server answers, last.
summary="$(python manage.py bootstrap --prepare --demo --summary)"

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

access=()
[ "$ACCESS_LOG" = "1" ] && access=(--access-logfile -)
gunicorn opsconsole.wsgi --bind "$HOST:$PORT" --workers "${WEB_WORKERS:-2}" --graceful-timeout 5 "${access[@]}" --log-level warning &
pids+=($!)
python manage.py qcluster &
pids+=($!)

# The summary says "running" once the web application answers a request, not merely when the
# port is open: gunicorn's worker loads Django after the port opens (seconds on a busy machine).
answers() {
  local status=""
  { exec 3<>"/dev/tcp/$HOST/$PORT"; } 2>/dev/null || return 1
  printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$HOST" >&3
  read -r -t 10 status <&3 || true
  exec 3<&- 3>&-
  [[ "$status" == HTTP/* ]]
}
deadline=$((SECONDS + 60))
until answers; do
  kill -0 "${pids[0]}" 2>/dev/null || break
  [ "$SECONDS" -lt "$deadline" ] || break
  sleep 0.2
done
printf '%s\n' "$summary"
echo "Running. Ctrl-C stops the web server and the worker."
echo
wait -n "${pids[@]}"
