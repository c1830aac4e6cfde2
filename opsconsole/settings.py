"""Settings from the environment (12-factor). Every variable is documented in README.md."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from opsconsole.datadir import data_dir, read_development_key
from opsconsole.env import (
    env_bool,
    env_choice,
    env_duration,
    env_host_list,
    env_int,
    env_json_object,
    env_list,
    env_milliseconds,
    env_str,
    parse_database_url,
    sqlite_database,
)
from opsconsole.timeouts import TASK_RETRY, TASK_TIMEOUT
from opsconsole.timeouts import check as check_timeouts

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = data_dir()

DEBUG = env_bool("DEBUG", False)


def _secret_key() -> tuple[str, bool]:
    """The configured key, or the per-installation development key kept in the data folder."""
    configured = env_str("SECRET_KEY")
    if configured:
        if len(configured) < 32:
            raise ImproperlyConfigured(
                "Environment variable SECRET_KEY: use at least 32 characters"
            )
        return configured, False
    # The entry points make the key file before the settings load (prepare_data_dir); a process
    # started another way before it exists signs with a key of its own, never a fixed one.
    return read_development_key(DATA_DIR) or secrets.token_urlsafe(50), True


SECRET_KEY, DEVELOPMENT_MODE = _secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    # django.contrib.admin with the console's site: the index grouped as operators look.
    "opsconsole.admin_site.OpsAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_prometheus",
    # Before django_q: its qcluster command wraps django-q2's (clean stop on a group SIGTERM).
    "opsconsole",
    "django_q",
    "axes",
    "monitoring",
    "backlog",
    "batches",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Request id, JSON errors on /api/, NUL in URLs refused: before anything reads the request.
    "opsconsole.errors.ApiErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "opsconsole.csp.ContentSecurityPolicyMiddleware",
    # Heartbeat pings go to their view from here: what follows serves people, not cron jobs.
    "opsconsole.errors.DirectPathMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so that it sees the failed login of the view and answers with the lockout page.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "opsconsole.urls"
WSGI_APPLICATION = "opsconsole.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    _default_db = parse_database_url(DATABASE_URL)
else:
    _default_db = sqlite_database(str(DATA_DIR / "opsconsole.sqlite3"))
_default_db["ENGINE"] = _default_db["ENGINE"].replace(
    "django.db.backends.", "django_prometheus.db.backends."
)
DATABASES = {"default": _default_db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# CheckRun's status-change index covers the status on PostgreSQL (INCLUDE); SQLite has no
# covering indexes and builds the same index without it, which is all it needs.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

# --- Redis, cache, queue --------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
CACHE_KEY_PREFIX = env_str("CACHE_KEY_PREFIX", "opsconsole")
# Connect and read timeout of every Redis call (cache, broker, stats, status): a Redis that
# hangs must degrade the console, never hang it (opsconsole/redis_guard.py).
REDIS_TIMEOUT = env_duration("REDIS_TIMEOUT", 1, minimum=0.05, maximum=2)
if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured("Environment variable REDIS_URL: expected redis://host:port/db")
    CACHES = {
        "default": {
            "BACKEND": "opsconsole.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "OPTIONS": {
                "socket_connect_timeout": REDIS_TIMEOUT,
                "socket_timeout": REDIS_TIMEOUT,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

Q_WORKERS = env_int("Q_WORKERS", 2, minimum=1, maximum=64)
# qcluster's stop on SIGTERM: tasks already taken may finish this long, then what is left is
# killed. Below systemd's TimeoutStopSec (docs/deployment.md) so the unit never needs SIGKILL.
QCLUSTER_STOP_TIMEOUT = env_duration("QCLUSTER_STOP_TIMEOUT", 8, minimum=1, maximum=600)
Q_CLUSTER = {
    "name": "opsconsole",
    "workers": Q_WORKERS,
    # Derived with the backlog budget and the leases in opsconsole/timeouts.py.
    "timeout": TASK_TIMEOUT,
    "retry": TASK_RETRY,
    "max_attempts": 1,
    "save_limit": 1000,
    "queue_limit": 50,
    "catch_up": False,
    "ack_failures": True,
    "label": "Task queue",
    "poll": 0.5,
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
    # django-q2's own broker connects without timeouts and logs an ERROR per guard cycle
    # while Redis is down; this one has REDIS_TIMEOUT and backs off.
    Q_CLUSTER["broker_class"] = "opsconsole.broker.ResilientRedisBroker"
else:
    Q_CLUSTER["orm"] = "default"

# --- Monitoring -----------------------------------------------------------------------------
CHECKS_MAX_CONCURRENCY = env_int("CHECKS_MAX_CONCURRENCY", 50, minimum=1, maximum=1000)
CHECKS_DEFAULT_INTERVAL = env_duration("CHECKS_DEFAULT_INTERVAL", 60, minimum=1)
# The operations documents' names (monitor.js). MONITOR_CHECK_INTERVAL is in milliseconds as
# they write it (60000 is a minute; a unit may be given: 60s); the *_ALERT_THRESHOLD values are
# the default warning thresholds, in percent, of checks that set none (docs/checks.md).
_monitor_interval = env_milliseconds("MONITOR_CHECK_INTERVAL", minimum=1)
if _monitor_interval is not None:
    if env_str("CHECKS_DEFAULT_INTERVAL") and _monitor_interval != CHECKS_DEFAULT_INTERVAL:
        raise ImproperlyConfigured(
            f"Environment variables CHECKS_DEFAULT_INTERVAL ({CHECKS_DEFAULT_INTERVAL:g}s) and "
            f"MONITOR_CHECK_INTERVAL ({_monitor_interval:g}s) disagree: set one of them"
        )
    CHECKS_DEFAULT_INTERVAL = _monitor_interval
CPU_ALERT_THRESHOLD = env_int("CPU_ALERT_THRESHOLD", 80, minimum=1, maximum=100)
MEMORY_ALERT_THRESHOLD = env_int("MEMORY_ALERT_THRESHOLD", 85, minimum=1, maximum=100)
DISK_ALERT_THRESHOLD = env_int("DISK_ALERT_THRESHOLD", 90, minimum=1, maximum=100)
REDIS_ALERT_THRESHOLD = env_int("REDIS_ALERT_THRESHOLD", 75, minimum=1, maximum=100)
CHECKS_DEFAULT_TIMEOUT = env_duration("CHECKS_DEFAULT_TIMEOUT", 10, minimum=0.1)
# SQL checks against the "default" alias connect with these credentials instead of the
# console's own: a read-only role (docs/checks.md has the CREATE ROLE recipe).
SQL_CHECKS_DATABASE_URL = env_str("SQL_CHECKS_DATABASE_URL")
if SQL_CHECKS_DATABASE_URL:
    parse_database_url(SQL_CHECKS_DATABASE_URL, "SQL_CHECKS_DATABASE_URL")  # fail at start
# A superuser's session can escape any read-only mode (COPY ... TO PROGRAM), so authored SQL
# is refused on one unless this is set.
SQL_CHECKS_ALLOW_SUPERUSER = env_bool("SQL_CHECKS_ALLOW_SUPERUSER", False)
# Folders whose files `logfile` checks may read (colon- or comma-separated absolute paths).
# Empty by default: a check file must not be a way to read any file the console can.
LOGFILE_CHECK_ROOTS = [
    root.strip()
    for root in env_str("LOGFILE_CHECK_ROOTS", "").replace(",", ":").split(":")
    if root.strip()
]
if any(not root.startswith("/") for root in LOGFILE_CHECK_ROOTS):
    raise ImproperlyConfigured(
        "Environment variable LOGFILE_CHECK_ROOTS: give absolute paths, e.g. /var/log/myapp"
    )

# --- Backlog and batches (read by those apps when they run) ---------------------------------
BACKLOG_HANDLERS = env_json_object("BACKLOG_HANDLERS")
BACKLOG_MAX_ATTEMPTS = env_int("BACKLOG_MAX_ATTEMPTS", 5, minimum=1)
# Retries back off from BACKLOG_RETRY_DELAY, doubling up to BACKLOG_RETRY_MAX_DELAY.
BACKLOG_RETRY_DELAY = env_duration("BACKLOG_RETRY_DELAY", 60, minimum=0)
BACKLOG_RETRY_MAX_DELAY = env_duration("BACKLOG_RETRY_MAX_DELAY", 3600, minimum=1)
# An entry claimed longer ago than this belongs to a dead worker and is claimable again.
BACKLOG_CLAIM_TIMEOUT = env_duration("BACKLOG_CLAIM_TIMEOUT", 900, minimum=10)
BACKLOG_WEBHOOK_TIMEOUT = env_duration("BACKLOG_WEBHOOK_TIMEOUT", 10, minimum=0.1)
# The scheduled run's budget and the claim refresh are derived from these and the database's
# lock wait (opsconsole/timeouts.py); values that leave no room are refused here.
check_timeouts(
    database=_default_db,
    task_timeout=Q_CLUSTER["timeout"],
    handler_timeout=BACKLOG_WEBHOOK_TIMEOUT,
    claim_timeout=BACKLOG_CLAIM_TIMEOUT,
)
BATCHES_API_ENABLED = env_bool("BATCHES_API_ENABLED", True)
BATCH_OPERATION_MAX_SIZE = env_int("BATCH_OPERATION_MAX_SIZE", 100, minimum=1)
BATCH_OPERATION_TIMEOUT = env_duration("BATCH_OPERATION_TIMEOUT", 120, minimum=1)
BATCH_EXECUTOR_DELAY = env_duration("BATCH_EXECUTOR_DELAY", 0.1)
BATCH_CHUNK_SIZE = env_int("BATCH_CHUNK_SIZE", 10, minimum=1, maximum=1000)
BATCH_ITEM_MAX_ATTEMPTS = env_int("BATCH_ITEM_MAX_ATTEMPTS", 3, minimum=1)
# First retry delay of a failed item; doubles each attempt, capped at 60 s.
BATCH_RETRY_BACKOFF = env_duration("BATCH_RETRY_BACKOFF", 1, minimum=0)
# Hosts the batch http operation may send to (empty: any); checked when a batch is created
# and again before each request.
BATCH_HTTP_ALLOWED_HOSTS = env_host_list("BATCH_HTTP_ALLOWED_HOSTS")
# The synced application's Redis: a batch http operation's `invalidate` keys are deleted there
# after each item that succeeds (docs/batches.md). Empty: batches cannot invalidate.
CACHE_INVALIDATE_REDIS_URL = env_str("CACHE_INVALIDATE_REDIS_URL")
if CACHE_INVALIDATE_REDIS_URL and not CACHE_INVALIDATE_REDIS_URL.startswith(
    ("redis://", "rediss://", "unix://")
):
    raise ImproperlyConfigured(
        "Environment variable CACHE_INVALIDATE_REDIS_URL: expected redis://host:port/db"
    )

# --- Alerts ---------------------------------------------------------------------------------
ACK_LINK_MAX_AGE = env_duration("ACK_LINK_MAX_AGE", 24 * 3600, minimum=60)
ALERT_GROUP_THRESHOLD = env_int("ALERT_GROUP_THRESHOLD", 5, minimum=1)
ALERT_NOTIFY_TIMEOUT = env_duration("ALERT_NOTIFY_TIMEOUT", 10, minimum=0.1)
ALERT_NOTIFY_MAX_ATTEMPTS = env_int("ALERT_NOTIFY_MAX_ATTEMPTS", 4, minimum=1, maximum=20)
ALERT_NOTIFY_BACKOFF = env_duration("ALERT_NOTIFY_BACKOFF", 30, minimum=1)

# --- Auth, sessions, security ---------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/admin/login/"
LOGIN_REDIRECT_URL = "/"
SECURE_COOKIES = env_bool("SECURE_COOKIES", not (DEBUG or DEVELOPMENT_MODE))
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = 31536000 if SECURE_COOKIES else 0
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", False)
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Largest request body read into memory (API JSON, forms); above it the API answers 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int(
    "REQUEST_MAX_BODY_BYTES", 2_621_440, minimum=1024, maximum=1024**3
)

# Login throttling (django-axes): LOGIN_FAILURE_LIMIT failed logins for one username, or from one
# address, lock both out for LOGIN_LOCKOUT_MINUTES. docs/deployment.md explains how to unlock.
AUTHENTICATION_BACKENDS = [
    # First: it refuses a locked-out username or address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10, minimum=1, maximum=1000)
LOGIN_LOCKOUT_MINUTES = env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1, maximum=7 * 24 * 60)
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one alone locks out
AXES_COOLOFF_TIME = "opsconsole.login_throttle.cool_off"
AXES_LOCKOUT_CALLABLE = "opsconsole.login_throttle.lockout_response"
AXES_CLIENT_IP_CALLABLE = "opsconsole.login_throttle.client_address"
AXES_USERNAME_CALLABLE = "opsconsole.login_throttle.client_username"
AXES_RESET_ON_SUCCESS = True
# A fixed cool-off: retrying during the lockout (even with the right password) does not extend it.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# Failed attempts are kept (and shown in the admin) until their cool-off ends; a row per
# successful login would grow without bound, so only failures are recorded.
AXES_DISABLE_ACCESS_LOG = True

# --- I18N, time, static ---------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
# One date-time format on the pages and in the admin: 24-hour, with the zone named
# ("2026-11-25 14:03 UTC"). The locale's formats win over these settings, so
# opsconsole/formats/en/formats.py says the same for the "en" locale the admin uses.
DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
DATE_FORMAT = SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i"
FORMAT_MODULE_PATH = ["opsconsole.formats"]
STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Mail -----------------------------------------------------------------------------------
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "opsconsole@localhost")
if not env_str("EMAIL_HOST"):
    # No mail server configured: mail goes to the log instead of failing.
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

# --- Observability ---------------------------------------------------------------------------
# /metrics serves a snapshot at most this old, shared by all web processes through the cache.
METRICS_SNAPSHOT_SECONDS = env_duration("METRICS_SNAPSHOT_SECONDS", 15, minimum=0)
# When set, /metrics needs "Authorization: Bearer <METRICS_TOKEN>".
METRICS_TOKEN = env_str("METRICS_TOKEN")
# Retention (manage.py housekeeping, daily).
# Raw runs are kept briefly (charts past a day and uptime read rollups and status changes);
# every status change and the last CHECKRUN_KEEP_LAST runs per check stay whatever their age.
CHECKRUN_RETENTION_DAYS = env_int("CHECKRUN_RETENTION_DAYS", 2, minimum=1)
CHECKRUN_KEEP_LAST = env_int("CHECKRUN_KEEP_LAST", 100, minimum=0)
CHECKROLLUP_5M_RETENTION_DAYS = env_int("CHECKROLLUP_5M_RETENTION_DAYS", 35, minimum=1)
CHECKROLLUP_1H_RETENTION_DAYS = env_int("CHECKROLLUP_1H_RETENTION_DAYS", 400, minimum=31)
RESOLVED_ALERT_RETENTION_DAYS = env_int("RESOLVED_ALERT_RETENTION_DAYS", 180, minimum=1)
BACKLOG_PROCESSED_RETENTION_DAYS = env_int("BACKLOG_PROCESSED_RETENTION_DAYS", 7, minimum=1)
BATCH_RETENTION_DAYS = env_int("BATCH_RETENTION_DAYS", 90, minimum=1)
QUEUE_SUCCESS_RETENTION_HOURS = env_int("QUEUE_SUCCESS_RETENTION_HOURS", 24, minimum=1)
QUEUE_FAILURE_RETENTION_DAYS = env_int("QUEUE_FAILURE_RETENTION_DAYS", 7, minimum=1)
REPORT_RETENTION_DAYS = env_int("REPORT_RETENTION_DAYS", 30, minimum=1)
# Idempotency-Key answers of POST /api/batches/ and /api/backlog/ are replayed this long.
IDEMPOTENCY_KEY_RETENTION_HOURS = env_int("IDEMPOTENCY_KEY_RETENTION_HOURS", 24, minimum=1)
# The scheduled 30-minute report is also mailed to staff when true.
OPSREPORT_EMAIL = env_bool("OPSREPORT_EMAIL", False)
# The health report's heading: the installation's name, e.g. "OFF-CHAIN HEALTH REPORT".
REPORT_TITLE = env_str("REPORT_TITLE", "OPS CONSOLE HEALTH REPORT")

# --- Logging --------------------------------------------------------------------------------
LOG_FORMAT = env_choice("LOG_FORMAT", "console" if DEBUG else "json", ("json", "console"))
LOG_LEVEL = env_choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "opsconsole.logging.JsonFormatter"},
        "console": {"()": "opsconsole.logging.ConsoleFormatter"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": sys.stderr,
            "formatter": LOG_FORMAT,
        },
    },
    "filters": {"redis_outage": {"()": "opsconsole.redis_guard.RedisOutageLogFilter"}},
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "django-q": {"filters": ["redis_outage"]},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
