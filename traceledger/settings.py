"""TraceLedger settings: every value comes from the environment (see .env.example).

One module for every environment. Local defaults work out of the box; a production run
(DJANGO_DEBUG=0) refuses the insecure ones (see ``traceledger/settings_guard.py``).
"""

from datetime import timedelta
from pathlib import Path

import environ

from traceledger.dev_secret import development_secret_key
from traceledger.queues import CELERY_QUEUES
from traceledger.redis_latch import LatchingConnection
from traceledger.settings_env import (
    boolean,
    elasticsearch_url,
    integer,
    log_level,
    meta_key,
    names,
    rate,
    redis_url,
    seconds,
    secret,
    url,
)
from traceledger.settings_guard import (
    guard_metrics_dir,
    guard_production_settings,
    guard_public_key,
    guard_retired_keys,
    guard_signing_key,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# Plain strings and URLs; typed values go through the strict readers of settings_env.
env = environ.Env()
env.smart_cast = False


# The key earlier versions fell back to: published in the source, so refused even in debug.
INSECURE_SECRET_KEY = "django-insecure-traceledger-local-development-only"

DEBUG = boolean("DJANGO_DEBUG", True)
DATA_DIR = Path(env.str("TRACELEDGER_DATA_DIR", default=str(BASE_DIR / "var")))
# Unset in development: a random key made once in the data folder (traceledger/dev_secret.py).
SECRET_KEY = secret("DJANGO_SECRET_KEY", "") or (development_secret_key(DATA_DIR) if DEBUG else "")
ALLOWED_HOSTS = names(
    "DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = names("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

guard_production_settings(
    debug=DEBUG,
    secret_key=SECRET_KEY,
    insecure_secret_key=INSECURE_SECRET_KEY,
    allowed_hosts=ALLOWED_HOSTS,
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework_api_key",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    # Swagger UI's and Redoc's JS/CSS as static files, so /api/docs/ works offline.
    "drf_spectacular_sidecar",
    "django_elasticsearch_dsl",
    "accounts",
    "audit",
    "search",
]

MIDDLEWARE = [
    "traceledger.request_id.RequestIdMiddleware",
    "traceledger.api_cache.ApiNoStoreMiddleware",
    "traceledger.query_guard.RejectNulQueryMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on the pages people open (CONTENT_SECURITY_POLICY below).
    "csp.middleware.CSPMiddleware",
    # Serves the admin's CSS and JS from gunicorn itself (no other web server in front).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A page's OperationalError (PostgreSQL down) is a 503, not a 500 (the API has its own).
    "traceledger.database_unavailable.DatabaseUnavailableMiddleware",
]

# The admin and the API docs load nothing but their own scripts (Django's admin has no
# inline script; the docs' is served by URL, SwaggerView): an HTML injection that got past
# the templates' escaping could run nothing. Inline styles stay allowed: Django's admin
# templates, the dashboard's chart and Swagger UI use them. JSON answers (/api/v1/) go
# without: no browser renders them, and ingest's answers stay small.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/api/v1/"],
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

ROOT_URLCONF = "traceledger.urls"
WSGI_APPLICATION = "traceledger.wsgi.application"
AUTH_USER_MODEL = "accounts.User"

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

# --- PostgreSQL -----------------------------------------------------------------------
DATABASES = {
    "default": env.db_url_config(
        url(
            "DATABASE_URL",
            default="postgres://localhost:5432/traceledger",
            schemes=("postgres", "postgresql"),
            what="PostgreSQL",
        )
    ),
}
# Django's backend, whose web processes bound each wait for PostgreSQL (traceledger/db/base.py).
DATABASES["default"]["ENGINE"] = "traceledger.db"
# Persistent connections: reconnecting per request/task costs ~13 ms here (notes §2c).
DATABASES["default"]["CONN_MAX_AGE"] = integer("DJANGO_CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"].setdefault("OPTIONS", {})
# How long a connection attempt to an unreachable PostgreSQL (down host, dropped packets)
# may take before OperationalError; without it psycopg waits 130 s. 2 s is the least libpq
# and psycopg accept (they raise 1 to 2), and far above a healthy connect (~13 ms, notes
# §2c). A request with a stale cached API key pays it once, then skips PostgreSQL for a few
# seconds (accounts/keycache.py). It applies per address a host name resolves to. A
# ?connect_timeout= in DATABASE_URL wins.
# https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNECT-CONNECT-TIMEOUT
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 2)
# A connection whose network path died silently (a failover, a NAT or firewall that dropped
# the flow) is noticed by the kernel and fails the query with OperationalError: without
# these libpq waits on it as long as TCP retransmits (~15 min), and a web thread or a
# worker task waited with it. Probes after 10 s idle, every 5 s, 3 unanswered: a dead idle
# connection is known in ~25 s; data sent and not acknowledged for 20 s ends it too. Neither
# limits a slow query (its socket is quiet, and the server's kernel answers the probes).
# https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-KEEPALIVES
for _option, _value in {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 20000,  # milliseconds
}.items():
    DATABASES["default"]["OPTIONS"].setdefault(_option, _value)
# A web request waits at most this long for a lock (an operator's LOCK TABLE, a migration
# rewriting a table), then answers 503 like a database outage: every gunicorn thread
# waited for the lock, and /healthz stopped answering with them. Web processes only
# (traceledger/wsgi.py): workers set their own per transaction, and migrations, purges and
# commands may wait longer. 0 = no limit.
TRACELEDGER_WEB_LOCK_TIMEOUT = seconds("TRACELEDGER_WEB_LOCK_TIMEOUT", default=10.0)
# "web" in gunicorn's processes (traceledger/wsgi.py); workers and commands leave it empty.
TRACELEDGER_PROCESS = env.str("TRACELEDGER_PROCESS", default="")
# Seconds a web request waits for PostgreSQL to answer one round trip (a query, a fetch, a
# commit) before the connection is dropped and the request answers 503 as in an outage: a
# PostgreSQL that accepts and never answers held every web thread (traceledger/db/base.py).
# Above the lock timeout, so that a lock wait ends with the server's own error. 0 = no limit.
TRACELEDGER_WEB_DB_TIMEOUT = seconds("TRACELEDGER_WEB_DB_TIMEOUT", default=15.0)
if TRACELEDGER_PROCESS == "web" and TRACELEDGER_WEB_LOCK_TIMEOUT:
    _options = DATABASES["default"]["OPTIONS"].get("options", "")
    DATABASES["default"]["OPTIONS"]["options"] = (
        f"{_options} -c lock_timeout={int(TRACELEDGER_WEB_LOCK_TIMEOUT * 1000)}".strip()
    )
# And PostgreSQL cancels a web statement itself after as long (503 "busy"): a connection the
# web gave up on left its query running on a server that was only slow, and each retry
# started another. The web's own deadline (traceledger/db/base.py) then only meets a server
# that does not answer at all.
if TRACELEDGER_PROCESS == "web" and TRACELEDGER_WEB_DB_TIMEOUT:
    _options = DATABASES["default"]["OPTIONS"].get("options", "")
    DATABASES["default"]["OPTIONS"]["options"] = (
        f"{_options} -c statement_timeout={int(TRACELEDGER_WEB_DB_TIMEOUT * 1000)}".strip()
    )
DATABASES["default"]["TEST"] = {"NAME": env.str("TRACELEDGER_TEST_DB", default=None)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache and rate-limit counters ---------------------------------------------
REDIS_URL = redis_url("REDIS_URL", default="redis://localhost:6379/0")
_REDIS_OPTIONS = {
    "CLIENT_CLASS": "django_redis.client.DefaultClient",
    # A Redis outage must degrade (cache miss, rate limit fails open), never fail a request.
    # https://github.com/jazzband/django-redis#memcached-exceptions-behavior
    "IGNORE_EXCEPTIONS": True,
    "SOCKET_CONNECT_TIMEOUT": seconds("TRACELEDGER_REDIS_TIMEOUT", default=0.25, positive=True),
    "SOCKET_TIMEOUT": seconds("TRACELEDGER_REDIS_TIMEOUT", default=0.25, positive=True),
    # After a failure, skip that Redis for a few seconds instead of waiting on every call.
    "CONNECTION_POOL_KWARGS": {"connection_class": LatchingConnection},
}
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "tl",
        "OPTIONS": _REDIS_OPTIONS,
    },
}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
DJANGO_REDIS_LOGGER = "traceledger.cache"
# The admin keeps working without Redis.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
# Where the admin's login goes when its ``next`` is unsafe (another host): Django's default,
# /accounts/profile/, is no page here (a 404 after a good login).
LOGIN_REDIRECT_URL = "admin:index"

# django-ratelimit: fail open when Redis is down (availability of the audit trail wins).
RATELIMIT_USE_CACHE = "default"
RATELIMIT_FAIL_OPEN = True
# Behind a reverse proxy: the request header holding the one client address it sets, as a
# META key (e.g. HTTP_X_REAL_IP). Not X-Forwarded-For: a list there is not one address.
RATELIMIT_IP_META_KEY = meta_key("RATELIMIT_IP_META_KEY")
TRACELEDGER_RATELIMIT_INGEST = rate("TRACELEDGER_RATELIMIT_INGEST", default="6000/m")
TRACELEDGER_RATELIMIT_READ = rate("TRACELEDGER_RATELIMIT_READ", default="1200/m")
# Ledger verification and export, each up to seconds of database time: a tighter budget.
TRACELEDGER_RATELIMIT_HEAVY = rate("TRACELEDGER_RATELIMIT_HEAVY", default="30/m")
# Exports streaming at once per web process (each holds a thread while it streams): the
# other threads stay free for ingest, reads and /healthz (audit/export_slots.py).
TRACELEDGER_EXPORTS_PER_PROCESS = integer("TRACELEDGER_EXPORTS_PER_PROCESS", default=2, minimum=1)
# Seconds a streamed export waits for the client to take its next part before the connection
# is closed: a client that stops reading held a slot, a thread and a transaction.
TRACELEDGER_EXPORT_STALL_TIMEOUT = seconds(
    "TRACELEDGER_EXPORT_STALL_TIMEOUT", default=60.0, positive=True
)
TRACELEDGER_RATELIMIT_LOGIN = rate("TRACELEDGER_RATELIMIT_LOGIN", default="10/m")
TRACELEDGER_RATELIMIT_BAD_KEYS = rate("TRACELEDGER_RATELIMIT_BAD_KEYS", default="60/m")
# Verified API keys are cached in Redis (accounts/keycache.py): re-checked against PostgreSQL
# after CACHE_SECONDS (a revocation outside the services takes at most this long), and the
# stale entry serves only while PostgreSQL is unreachable, for up to STALE_SECONDS.
TRACELEDGER_API_KEY_CACHE_SECONDS = integer("TRACELEDGER_API_KEY_CACHE_SECONDS", default=30)
TRACELEDGER_API_KEY_CACHE_STALE_SECONDS = integer(
    "TRACELEDGER_API_KEY_CACHE_STALE_SECONDS", default=3600
)

# --- RabbitMQ and Celery --------------------------------------------------------------
CELERY_BROKER_URL = url(
    "CELERY_BROKER_URL",
    default="amqp://guest:guest@localhost:5672//",
    schemes=("amqp", "amqps", "pyamqp"),
    what="RabbitMQ",
    several=";",  # failover brokers (kombu)
)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_QUEUES = CELERY_QUEUES
CELERY_TASK_DEFAULT_QUEUE = "maintenance"
CELERY_TASK_CREATE_MISSING_QUEUES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Failed tasks are rejected (dead-lettered), not acked and lost (notes §1.2).
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = False
# One unacked message per process: batches are large, and a killed worker redelivers little.
# At least 1: Celery reads 0 as "unlimited", every waiting message prefetched into one worker.
CELERY_WORKER_PREFETCH_MULTIPLIER = integer("TRACELEDGER_WORKER_PREFETCH", default=1, minimum=1)
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# RabbitMQ blocks a connection that publishes during a memory or disk alarm and stops reading
# it: without a socket bound, every publish of Celery's own connections (the worker's search
# indexing, retries and dead letters, beat's schedule) then waits for its confirm, and for the
# channel's close after that, for as long as the alarm lasts (py-amqp has no default bound).
TRACELEDGER_BROKER_IO_TIMEOUT = seconds(
    "TRACELEDGER_BROKER_IO_TIMEOUT", default=10.0, positive=True
)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "confirm_publish": True,
    "read_timeout": TRACELEDGER_BROKER_IO_TIMEOUT,
    "write_timeout": TRACELEDGER_BROKER_IO_TIMEOUT,
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# Periodic jobs, declared in one place. Apps add theirs here.
CELERY_BEAT_SCHEDULE: dict = {}
# Search: index whatever is behind each tenant's high-water mark (missed signals, ES outages).
CELERY_BEAT_SCHEDULE["search-sweep-index"] = {
    "task": "search.sweep_index",
    "schedule": 30.0,
    "options": {"queue": "search.index", "expires": 25},
}
# Search: remove what retention purges left in a search backend that was away at the time
# (search/purge.py); a run with nothing left behind is one query on a small table.
CELERY_BEAT_SCHEDULE["search-purge-sweep"] = {
    "task": "search.purge_sweep",
    "schedule": 60.0,
    "options": {"queue": "search.index", "expires": 55},
}
# Audit: republish ingest batches the API parked in the outbox while RabbitMQ was down.
CELERY_BEAT_SCHEDULE["audit-relay-outbox"] = {
    "task": "audit.relay_outbox",
    "schedule": 10.0,
    "options": {"queue": "maintenance", "expires": 9},
}
# Ledger: sign a checkpoint for every tenant whose chain moved (docs/ledger.md).
TRACELEDGER_CHECKPOINT_SECONDS = seconds(
    "TRACELEDGER_CHECKPOINT_SECONDS", default=300.0, positive=True
)
CELERY_BEAT_SCHEDULE["ledger-sign-checkpoints"] = {
    "task": "audit.ledger.sign_checkpoints",
    "schedule": TRACELEDGER_CHECKPOINT_SECONDS,
    "options": {"queue": "maintenance", "expires": TRACELEDGER_CHECKPOINT_SECONDS * 0.9},
}
# Celery's Django fixup closes the DB connection around every task unless this is set.
CELERY_DB_REUSE_MAX = integer("TRACELEDGER_DB_REUSE_MAX", default=1000)
# Celery acks a message it cannot decode (lost); this consumer rejects it to the DLQ.
CELERY_WORKER_CONSUMER = "audit.worker_signals:DeadLetteringConsumer"
# The ingest transaction gives up waiting for a lock / a statement after these many seconds
# and the task retries with backoff (docs/ingest-worker.md).
TRACELEDGER_INGEST_LOCK_TIMEOUT = seconds("TRACELEDGER_INGEST_LOCK_TIMEOUT", default=5.0)
TRACELEDGER_INGEST_STATEMENT_TIMEOUT = seconds("TRACELEDGER_INGEST_STATEMENT_TIMEOUT", default=60.0)
# An ingest task still running after this many seconds is interrupted and retried (a database
# that stopped answering mid-query); the process is killed 60 s later if it does not stop.
TRACELEDGER_INGEST_SOFT_TIME_LIMIT = integer(
    "TRACELEDGER_INGEST_SOFT_TIME_LIMIT", default=240, minimum=1
)
# Retries of a transient failure (backoff 1, 2, 4 ... 60 s with jitter) before the batch is
# dead-lettered.
TRACELEDGER_INGEST_MAX_RETRIES = integer("TRACELEDGER_INGEST_MAX_RETRIES", default=20)
# Under load an ingest task takes up to this many more waiting messages (and about this many
# events) from audit.ingest into its own transaction, acked after the commit (issue 9,
# docs/ingest-worker.md). 0 stores one message per transaction.
TRACELEDGER_INGEST_COALESCE_MESSAGES = integer("TRACELEDGER_INGEST_COALESCE_MESSAGES", default=50)
TRACELEDGER_INGEST_COALESCE_EVENTS = integer("TRACELEDGER_INGEST_COALESCE_EVENTS", default=5000)
# Admission control (issue 9 target 3): while audit.ingest holds at least this many messages
# (requests), POST /api/v1/audit-events answers 429 with Retry-After instead of growing the
# backlog and the lag without bound. Each web process reads the depth on its publishing
# channel at most every TRACELEDGER_INGEST_BACKLOG_PROBE seconds. 0 turns it off.
TRACELEDGER_INGEST_MAX_BACKLOG = integer("TRACELEDGER_INGEST_MAX_BACKLOG", default=1000)
TRACELEDGER_INGEST_BACKLOG_PROBE = seconds("TRACELEDGER_INGEST_BACKLOG_PROBE", default=0.5)
TRACELEDGER_INGEST_BACKLOG_RETRY_AFTER = integer(
    "TRACELEDGER_INGEST_BACKLOG_RETRY_AFTER", default=1, minimum=1
)

# --- TraceLedger -----------------------------------------------------------------------
TRACELEDGER_PUBLISH_TIMEOUT = seconds("TRACELEDGER_PUBLISH_TIMEOUT", default=1.0, positive=True)
TRACELEDGER_SIGNING_KEY = secret("TRACELEDGER_SIGNING_KEY", "")
guard_signing_key(TRACELEDGER_SIGNING_KEY)
# The current public key alone (PEM), for a process that verifies checkpoints or serves the
# public key without the private key (the web): docs/ledger.md §5, "Which process holds
# which key". Checked against TRACELEDGER_SIGNING_KEY when both are set.
TRACELEDGER_SIGNING_PUBLIC_KEY = secret("TRACELEDGER_SIGNING_PUBLIC_KEY", "")
guard_public_key(TRACELEDGER_SIGNING_PUBLIC_KEY, signing_pem=TRACELEDGER_SIGNING_KEY)
# Public keys of rotated-out signing keys: their checkpoints keep verifying (docs/ledger.md).
TRACELEDGER_SIGNING_RETIRED_KEYS = secret("TRACELEDGER_SIGNING_RETIRED_KEYS", "")
guard_retired_keys(TRACELEDGER_SIGNING_RETIRED_KEYS)
# Read by prometheus_client itself (traceledger/metrics.py), checked here like every setting.
guard_metrics_dir(env.str("PROMETHEUS_MULTIPROC_DIR", default=""))
TRACELEDGER_HEALTH_TIMEOUT = seconds("TRACELEDGER_HEALTH_TIMEOUT", default=0.8, positive=True)
# Detail reads are cached this long (s); events are immutable, so only memory bounds it.
TRACELEDGER_EVENT_CACHE_TTL = integer("TRACELEDGER_EVENT_CACHE_TTL", default=86400)

# --- Search -----------------------------------------------------------------------------
ELASTICSEARCH_URL = elasticsearch_url("ELASTICSEARCH_URL")
# Per-save autosync rolls back the audit row when ES or RabbitMQ is down (notes §4).
ELASTICSEARCH_DSL_AUTOSYNC = False
ELASTICSEARCH_DSL_AUTO_REFRESH = False
ELASTICSEARCH_DSL = {
    "default": {"hosts": ELASTICSEARCH_URL or "http://localhost:9200", "request_timeout": 2}
}
# A search waits at most this long for Elasticsearch before answering from PostgreSQL;
# after BREAKER_FAILURES outages in a row it stops asking for BREAKER_RESET seconds.
TRACELEDGER_SEARCH_TIMEOUT = seconds("TRACELEDGER_SEARCH_TIMEOUT", default=1.0, positive=True)
# The index task queued by each ingest waits at most this long per Elasticsearch bulk request;
# slower ones are left to the sweep (30 s). The task shares the worker processes with
# ingestion, which must never wait on Elasticsearch (docs/search.md, "Sync").
TRACELEDGER_SEARCH_INDEX_TIMEOUT = seconds(
    "TRACELEDGER_SEARCH_INDEX_TIMEOUT", default=2.0, positive=True
)
TRACELEDGER_SEARCH_BREAKER_FAILURES = integer(
    "TRACELEDGER_SEARCH_BREAKER_FAILURES", default=3, minimum=1
)
TRACELEDGER_SEARCH_BREAKER_RESET = seconds("TRACELEDGER_SEARCH_BREAKER_RESET", default=30.0)

# --- API --------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "accounts.authentication.JWTAuthentication",  # simplejwt's, naming an expired token
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # No ?format= renderer override: the API renders JSON only, so DRF would answer 404 to
    # ?format=csv before the view could name the unknown parameter (400), and the export
    # endpoint's ?format=csv|jsonl is its own parameter. /api/schema/ keeps ?format=json|yaml
    # (traceledger/urls.py).
    # https://www.django-rest-framework.org/api-guide/settings/#url_format_override
    "URL_FORMAT_OVERRIDE": None,
    # JSON, never compressed: a gzip body is a 415 naming Content-Encoding.
    "DEFAULT_PARSER_CLASSES": ["traceledger.api.parsers.UncompressedJSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "traceledger.api.exceptions.exception_handler",
    # Every API view counts against TRACELEDGER_RATELIMIT_READ; ingest swaps in its own.
    "DEFAULT_THROTTLE_CLASSES": ["accounts.ratelimits.ReadRateLimit"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "TraceLedger API",
    "DESCRIPTION": "Tamper-evident audit-log service.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Serve the UI's assets from our own static files (drf-spectacular-sidecar, version
    # pinned in requirements.txt) instead of the unpinned jsdelivr CDN: /api/docs/ must
    # not be a blank page on a machine without internet access.
    # https://drf-spectacular.readthedocs.io/en/latest/settings.html
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "traceledger.api.schema_hooks.error_responses",
        "audit.api.ingest_schema.strict_ingest_body",
        "audit.filters.empty_means_absent",
    ],
}
# However often a client refreshes, a login lasts at most this long (RotatingRefreshSerializer):
# each refresh starts a new REFRESH_TOKEN_LIFETIME, so a stolen refresh token lived forever.
TRACELEDGER_JWT_SESSION_HOURS = integer("TRACELEDGER_JWT_SESSION_HOURS", default=168, minimum=1)
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(
        minutes=integer("TRACELEDGER_JWT_ACCESS_MINUTES", default=10, minimum=1)
    ),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=1),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "SIGNING_KEY": SECRET_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
    # Tokens carry a digest of the password hash they were issued under: a password change
    # ends every session (access tokens here, refresh tokens in RotatingRefreshSerializer).
    "CHECK_REVOKE_TOKEN": True,
}
# Largest accepted request body: 1,000 events of ~5 KiB each on average (one event's
# metadata may hold up to 16 KiB, not every event of a full batch).
DATA_UPLOAD_MAX_MEMORY_SIZE = integer(
    "TRACELEDGER_MAX_BODY_BYTES", default=5 * 1024 * 1024, minimum=1
)
# Seconds a request's whole body may take to arrive (traceledger/request_body.py): 5 MiB in
# 30 s is ~1.4 Mbit/s. Slower, or stalled, it is a 408 instead of a web thread held for good.
TRACELEDGER_BODY_TIMEOUT = seconds("TRACELEDGER_BODY_TIMEOUT", default=30.0, positive=True)

# Admin messages live in the session (the database), not in a cookie: the message that shows
# a new API key once would otherwise carry the key to the browser's cookie jar and back.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# --- Security (production) ----------------------------------------------------------------
# TLS usually ends at a reverse proxy, which says so in X-Forwarded-Proto. Without such a
# proxy in front, a client could send the header itself: turn the trust off there.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if boolean("DJANGO_TRUST_X_FORWARDED_PROTO", True) else None
)
SECURE_SSL_REDIRECT = boolean("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = integer("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = boolean("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = boolean("DJANGO_SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# W021 asks for HSTS preloading, a domain-wide decision that is hard to undo: opt in with
# DJANGO_SECURE_HSTS_PRELOAD=1, so `check --deploy` stays clean until then.
SILENCED_SYSTEM_CHECKS = names(
    "DJANGO_SILENCED_SYSTEM_CHECKS", default=[] if SECURE_HSTS_PRELOAD else ["security.W021"]
)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# Admin times to the second with their zone (2026-11-24 22:14:05 UTC): traceledger/formats.
FORMAT_MODULE_PATH = ["traceledger.formats"]
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# WhiteNoise serves STATIC_ROOT (filled by `collectstatic`, which `make run` and the image
# run); with DEBUG on it also finds files in the apps directly. Compressed, not hashed
# names: a template naming a file `collectstatic` has not seen must not fail the page.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Logging: one JSON object per line, each carrying the request id ----------------------
LOG_LEVEL = log_level("DJANGO_LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "traceledger.request_id.RequestIdLogFilter"},
        # During an outage these loggers repeat one line per request or per cache call: let
        # the first through (with its traceback), then one line per 30 s per process that
        # counts the rest (traceledger/log_throttle.py).
        "outage_throttle": {"()": "traceledger.log_throttle.ThrottleFilter", "interval": 30},
        # Loggers whose INFO lines are routine: only their warnings and errors.
        "outage_warning_throttle": {
            "()": "traceledger.log_throttle.ThrottleFilter",
            "interval": 30,
            "level": "WARNING",
        },
        # The periodic tasks' "skipped: <dependency> unavailable" lines, a kind per dependency.
        "dependency_throttle": {
            "()": "traceledger.log_throttle.ThrottleFilter",
            "interval": 30,
            "kind_attrs": ["dependency"],
        },
        # The search sweep's "skips <backend>" line, a kind per backend.
        "backend_throttle": {
            "()": "traceledger.log_throttle.ThrottleFilter",
            "interval": 30,
            "kind_attrs": ["backend"],
        },
        # /readyz logs each failed check under one template: a kind per check.
        "readiness_throttle": {
            "()": "traceledger.log_throttle.ThrottleFilter",
            "interval": 30,
            "kind_attrs": ["check"],
        },
        # django.request's 5xx lines (every read while PostgreSQL is down); 4xx stay as they are.
        "server_error_throttle": {
            "()": "traceledger.log_throttle.ServerErrorThrottleFilter",
            "interval": 30,
        },
        # celery beat, while RabbitMQ is down: each failed send as one line without the stack
        # (traceledger/logging_beat.py), then throttled per schedule entry; its INFO lines
        # (`Sending due task`) are routine and left alone.
        "beat_send_error": {"()": "traceledger.logging_beat.BeatSendErrorFilter"},
        # A task outcome's traceback once, not twice; none for a rejection (a poison message,
        # dead-lettered by design; traceledger/logging_tasks.py).
        "task_outcome": {"()": "traceledger.logging_tasks.TaskOutcomeFilter"},
        # Celery's line for each retry of each message (every batch, while PostgreSQL is away).
        "task_retry_throttle": {
            "()": "traceledger.logging_tasks.RetryThrottleFilter",
            "interval": 30,
        },
        "beat_throttle": {
            "()": "traceledger.log_throttle.ThrottleFilter",
            "interval": 30,
            "kind_attrs": ["entry"],
            "level": "WARNING",
        },
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own defaults (django.utils.log.DEFAULT_LOGGING) add a plain-text console
        # handler while DEBUG is on and mail_admins while it is off: listing the loggers here
        # removes those handlers, so their records reach the JSON handler only, once.
        # https://docs.djangoproject.com/en/5.2/ref/logging/#default-logging-configuration
        "django": {"handlers": [], "propagate": True},
        "django.server": {"handlers": [], "propagate": True},
        "django.request": {"filters": ["server_error_throttle"]},
        "django.db.backends": {"level": "INFO"},
        "amqp": {"level": "WARNING"},
        "kombu": {"level": "WARNING"},
        "elastic_transport": {"level": "WARNING"},
        # django-redis: every cache call IGNORE_EXCEPTIONS turned into a miss or no-op.
        DJANGO_REDIS_LOGGER: {"filters": ["outage_throttle"]},
        # API keys served from stale cached entries while PostgreSQL is unreachable, and
        # last-use writes that failed (its recovery line is a kind of its own).
        "accounts.selectors": {"filters": ["outage_throttle"]},
        "accounts.services.last_use": {"filters": ["outage_throttle"]},
        # A web request's wait for a PostgreSQL that does not answer (every request, then).
        "traceledger.db.base": {"filters": ["outage_throttle"]},
        # Each GET /readyz while Redis (or another dependency) is down.
        "traceledger.health": {"filters": ["readiness_throttle"]},
        # A client that stalls mid-body, or many of them: one line per 30 s per process.
        "traceledger.request_body": {"filters": ["outage_throttle"]},
        # The worker's "consumer: Cannot connect to … Trying again" at every retry while
        # RabbitMQ is away.
        "celery.worker.consumer.consumer": {"filters": ["outage_throttle"]},
        # "Task … received", once per delivery: a retry coming back from the delay queues
        # every ≤ 60 s repeated it for every waiting message while PostgreSQL was down
        # (4,454 lines a minute in a 150 s outage, growing with the backlog; operator QA).
        # The task's own lines and Celery's "succeeded" say the rest.
        "celery.worker.strategy": {"level": "WARNING"},
        # Each read answered 503 while PostgreSQL is down, and each admin page.
        "traceledger.api.exceptions": {"filters": ["outage_throttle"]},
        "traceledger.database_unavailable": {"filters": ["outage_throttle"]},
        # The order matters: rewrite the line, then throttle it.
        "celery.beat": {"filters": ["beat_send_error", "beat_throttle"]},
        "celery.app.trace": {"filters": ["task_outcome", "task_retry_throttle"]},
        # Periodic tasks while a dependency is away (each run would repeat its line), the
        # ingest coalescer's broker errors, the publisher's failed publishes (every request,
        # every relay run) and the Elasticsearch client's failing node.
        "audit.tasks_outbox": {"filters": ["dependency_throttle"]},
        "audit.tasks_ledger": {"filters": ["dependency_throttle"]},
        "search.tasks": {"filters": ["dependency_throttle"]},
        "search.services.sweep": {"filters": ["backend_throttle"]},
        "search.tasks_purge": {"filters": ["dependency_throttle"]},
        "search.purge.sweep": {"filters": ["backend_throttle"]},
        # The index task's "left to the sweep" while Elasticsearch is away (every ingest batch).
        "search.services.index": {"filters": ["backend_throttle"]},
        # "search falls back to PostgreSQL", every search while Elasticsearch is away.
        "search.selectors": {"filters": ["outage_throttle"]},
        "audit.coalescer.broker": {"filters": ["outage_throttle"]},
        # "ingest refused: broker and database both unavailable", every POST answered 503.
        "audit.services.submission": {"filters": ["outage_throttle"]},
        # The admin's DLQ depth, read on every page view while RabbitMQ is away.
        "audit.services.dead_letters.depth": {"filters": ["outage_throttle"]},
        "audit.publisher": {"filters": ["outage_warning_throttle"]},
        "elastic_transport.node_pool": {"filters": ["outage_warning_throttle"]},
    },
}
