"""Settings for the Graphile Worker console, read from the environment.

Every value comes from an environment variable with a strict parser: a malformed value stops
the process at start with a sentence naming the variable, rather than surfacing later.
"""

from __future__ import annotations

import ipaddress
import warnings
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from dashboard.env import env_bool, env_int, env_list, env_str, parse_database_url
from dashboard.worker_databases import check_name
from dashboard.worker_databases import parse as parse_worker_databases

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
# `manage.py demo` sets CONSOLE_DEMO: a local console on 127.0.0.1 with a throwaway key.
DEMO = env_bool("CONSOLE_DEMO", False)
# The bootstrap sets CONSOLE_EMBEDDED when, without DATABASE_URL, a command runs on the embedded
# PostgreSQL in .pgdata/: the demo's database, only reachable through a socket in the checkout.
EMBEDDED = env_bool("CONSOLE_EMBEDDED", False)
LOCAL_ONLY = DEBUG or DEMO or EMBEDDED
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if not LOCAL_ONLY:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY (or DEBUG=1 for local development)."
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if LOCAL_ONLY else [])
READ_ONLY = env_bool("READ_ONLY", False)

# The worker schema we operate; it belongs to Graphile Worker, never to Django.
GRAPHILE_WORKER_SCHEMA = env_str("GRAPHILE_WORKER_SCHEMA", "graphile_worker")
# The console's own tables (users, sessions, audit log) live in this schema of the console
# database: by default the worker database itself, or CONSOLE_DATABASE_URL when set.
CONSOLE_SCHEMA = env_str("CONSOLE_SCHEMA", "graphile_console")
# Reads that take longer than this are cancelled and reported as "took too long".
READ_STATEMENT_TIMEOUT_MS = env_int("READ_STATEMENT_TIMEOUT_MS", 10_000, minimum=100)
# A read that one of the opt-in indexes would serve (worker_admin/index_advice.py), on a jobs
# table of more than UNINDEXED_READ_ROWS rows (the planner's estimate) without that index, gets
# UNINDEXED_READ_TIMEOUT_MS for the whole page (not per query); past it the page names the
# index to create, or the filters to narrow, instead of waiting for READ_STATEMENT_TIMEOUT_MS.
UNINDEXED_READ_ROWS = env_int("UNINDEXED_READ_ROWS", 200_000, minimum=0)
UNINDEXED_READ_TIMEOUT_MS = env_int("UNINDEXED_READ_TIMEOUT_MS", 1_500, minimum=1)
# Live refresh interval of the pages, in seconds; the floor keeps a forgotten tab cheap.
POLL_INTERVAL_FLOOR_SECONDS = 2
POLL_INTERVAL_SECONDS = max(env_int("POLL_INTERVAL_SECONDS", 5, minimum=1), 2)
# Counts behind polled pages are taken at most once per this many seconds, for every user and
# every console process together (worker_admin/snapshots.py); 0 computes them on each request.
# By default once per refresh interval: a tab never sees numbers older than its own refresh, and
# a shorter interval would recount on the workers' database for refreshes nobody asked for.
SHARED_SNAPSHOT_SECONDS = env_int("SHARED_SNAPSHOT_SECONDS", POLL_INTERVAL_SECONDS, minimum=0)

# A bulk action may post up to 10,000 ticked ids; accept more fields than that so an oversized
# request gets the console's own sentence (and an audit entry) rather than a bare 400.
DATA_UPLOAD_MAX_NUMBER_FIELDS = 100_000
# A batch add may carry up to 5 MB of jobs, and its confirmation sends them back once more.
DATA_UPLOAD_MAX_MEMORY_SIZE = 12 * 1024 * 1024

# The most jobs one "all matching this filter" action may change; it runs in chunks of 1,000.
BULK_ACTION_LIMIT = env_int("BULK_ACTION_LIMIT", 50_000, minimum=1)
# A long bulk action answers after about this many seconds with its progress, then continues.
ACTION_STEP_SECONDS = env_int("ACTION_STEP_SECONDS", 5, minimum=1)

APPLICATION_NAME = env_str("APPLICATION_NAME", "graphile-console")

# /metrics answers a request that carries `Authorization: Bearer <METRICS_TOKEN>` (when set) or
# that comes from one of these networks; everything else gets 403. /healthz is open.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS", ["127.0.0.1/32", "::1/128"])
for _network in METRICS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"METRICS_ALLOWED_NETWORKS: {_network!r} is not a network "
            "(write an address or CIDR block, e.g. 10.0.0.0/8)."
        ) from None
# A registered worker whose heartbeat is older than this counts as stale in /metrics.
STALE_WORKER_THRESHOLD_SECONDS = env_int("STALE_WORKER_THRESHOLD_SECONDS", 300, minimum=1)
# The Crons page: the crontab the workers run (a file path, or the crontab text itself), so it
# can show each item's schedule and due times; without it, only what the database knows.
GRAPHILE_WORKER_CRONTAB = env_str("GRAPHILE_WORKER_CRONTAB", "")
# A due time counts as missed only once this many seconds have passed without an execution.
CRON_MISSED_TOLERANCE_SECONDS = env_int("CRON_MISSED_TOLERANCE_SECONDS", 60, minimum=0)

# History (worker_admin/history): a snapshot every HISTORY_INTERVAL_SECONDS, the per-state and
# per-task/queue counts every HISTORY_COUNTS_INTERVAL_SECONDS; taken by whichever console request
# finishes first once one is due (HISTORY_RECORD_ON_REQUEST) or by `graphile_worker record-history`.
HISTORY_INTERVAL_SECONDS = env_int("HISTORY_INTERVAL_SECONDS", 10, minimum=1)
HISTORY_COUNTS_INTERVAL_SECONDS = env_int("HISTORY_COUNTS_INTERVAL_SECONDS", 60, minimum=1)
HISTORY_RECORD_ON_REQUEST = env_bool("HISTORY_RECORD_ON_REQUEST", True)
HISTORY_TOP_GROUPS = env_int("HISTORY_TOP_GROUPS", 20, minimum=0)
# Registered workers whose heartbeat each counts round records (the most recent first).
HISTORY_HEARTBEAT_WORKERS = env_int("HISTORY_HEARTBEAT_WORKERS", 500, minimum=0)

# The charts above the overview's counts (their own read and refresh); off leaves them on the
# History page only.
HISTORY_CHARTS_ON_OVERVIEW = env_bool("HISTORY_CHARTS_ON_OVERVIEW", True)
# Retention: full resolution for HISTORY_KEEP_RAW_HOURS, then one row a minute until
# HISTORY_KEEP_MINUTES_DAYS, then one an hour until HISTORY_KEEP_HOURS_DAYS; older rows go.
HISTORY_KEEP_RAW_HOURS = env_int("HISTORY_KEEP_RAW_HOURS", 24, minimum=1)
HISTORY_KEEP_MINUTES_DAYS = env_int("HISTORY_KEEP_MINUTES_DAYS", 7, minimum=1)
HISTORY_KEEP_HOURS_DAYS = env_int("HISTORY_KEEP_HOURS_DAYS", 90, minimum=1)


def _database(url: str, *, search_path: str | None, name: str = "DATABASE_URL") -> dict:
    config = parse_database_url(url, name)
    # jit=off: the console's queries are short; on a large jobs table their planner cost passes
    # the JIT threshold and compiling took longer than running (bench/README.md: 1.65 s → 0.4 s).
    options = [f"-c statement_timeout={READ_STATEMENT_TIMEOUT_MS}", "-c jit=off"]
    if search_path:
        options.append(f"-c search_path={search_path}")
    extra = config.pop("EXTRA_OPTIONS")
    if extra.get("options"):
        options.insert(0, extra.pop("options"))
    config["OPTIONS"] = {
        **extra,
        "application_name": extra.get("application_name", APPLICATION_NAME),
        "options": " ".join(options),
    }
    config["CONN_MAX_AGE"] = env_int("CONN_MAX_AGE", 60, minimum=0)
    config["CONN_HEALTH_CHECKS"] = True
    return config


DATABASE_URL = env_str("DATABASE_URL", "")
if not DATABASE_URL:
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. Point it at the Graphile Worker database, "
        "or run `python3 manage.py demo` for an embedded one."
    )
CONSOLE_DATABASE_URL = env_str("CONSOLE_DATABASE_URL", "")

# Alias `default` holds the console's tables; alias WORKER_DATABASE holds the worker schema.
# They are one connection unless CONSOLE_DATABASE_URL points somewhere else.
DATABASES = {"default": _database(CONSOLE_DATABASE_URL or DATABASE_URL, search_path=CONSOLE_SCHEMA)}
WORKER_DATABASE = "default"
if CONSOLE_DATABASE_URL:
    DATABASES["worker"] = _database(DATABASE_URL, search_path=None)
    WORKER_DATABASE = "worker"

# Several Graphile Worker databases in one console (dashboard/worker_databases.py): DATABASE_URL's
# is called GRAPHILE_WORKER_NAME; GRAPHILE_WORKER_DATABASES adds more, each on its own alias.
# Pages of another database live under /db/<name>/ (worker_admin/databases.py).
GRAPHILE_WORKER_NAME = check_name(env_str("GRAPHILE_WORKER_NAME", "main"), "GRAPHILE_WORKER_NAME")
WORKER_DATABASES = {
    GRAPHILE_WORKER_NAME: {
        "alias": WORKER_DATABASE,
        "schema": GRAPHILE_WORKER_SCHEMA,
        "max_role": "admin",
        "groups": (),
    }
}
for _entry in parse_worker_databases(
    env_str("GRAPHILE_WORKER_DATABASES", ""),
    main=GRAPHILE_WORKER_NAME,
    default_schema=GRAPHILE_WORKER_SCHEMA,
):
    DATABASES["gw:" + _entry.name] = _database(
        _entry.url, search_path=None, name=f"GRAPHILE_WORKER_DATABASES[{_entry.name!r}]"
    )
    WORKER_DATABASES[_entry.name] = {
        "alias": "gw:" + _entry.name,
        "schema": _entry.schema,
        "max_role": _entry.max_role,
        "groups": _entry.groups,
    }

# Reads from a streaming replica (worker_admin/replica.py, docs/scaling.md): read-only pages, the
# API's reads and /metrics use alias `worker_replica` while it is in recovery and at most
# REPLICA_LAG_MAX_SECONDS behind; every write, preview and re-check stays on WORKER_DATABASE.
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL", "")
# 0 turns replica reads off without removing the URL (a replica under maintenance, a comparison).
REPLICA_READS = env_bool("REPLICA_READS", True)
REPLICA_LAG_MAX_SECONDS = env_int("REPLICA_LAG_MAX_SECONDS", 60, minimum=0)
REPLICA_LAG_WARN_SECONDS = env_int("REPLICA_LAG_WARN_SECONDS", 10, minimum=0)
REPLICA_CHECK_SECONDS = env_int("REPLICA_CHECK_SECONDS", 5, minimum=1)
# A replica that is down must cost a request at most this, once per check interval.
REPLICA_CONNECT_TIMEOUT_SECONDS = env_int("REPLICA_CONNECT_TIMEOUT_SECONDS", 2, minimum=1)
if DATABASE_REPLICA_URL:
    DATABASES["worker_replica"] = _database(
        DATABASE_REPLICA_URL, search_path=None, name="DATABASE_REPLICA_URL"
    )
    DATABASES["worker_replica"]["OPTIONS"].setdefault(
        "connect_timeout", REPLICA_CONNECT_TIMEOUT_SECONDS
    )
    # Under test the replica is the primary itself, as Django documents for replicas.
    DATABASES["worker_replica"]["TEST"] = {"MIRROR": WORKER_DATABASE}
DATABASE_ROUTERS = ["worker_admin.routers.WorkerSchemaRouter"]

# Snapshots shared by every console process (worker_admin/snapshots.py): Django's database cache,
# in a table of the console's own schema (created by migration 0007), so processes and hosts
# behind one load balancer share one count per interval. The default cache stays per process.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "snapshots": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "console_snapshot_cache",
        "OPTIONS": {"MAX_ENTRIES": 5000, "CULL_FREQUENCY": 4},
    },
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "ninja",
    "template_partials",
    "axes",
    "worker_admin",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # /db/<name>/…: which worker database the request is about; before anything reads the path.
    "worker_admin.databases.DatabasePrefix",
    "worker_admin.instrumentation.RequestMetricsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    # Who changes accounts, and the admin site's READ_ONLY and one transaction per write. After
    # the CSRF and login checks: it runs admin writes itself (worker_admin/admin_site.py).
    "worker_admin.admin_site.AdminSiteMiddleware",
    "worker_admin.middleware.DatabaseErrorMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"

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
                "worker_admin.context_processors.console",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# django-axes checks for a lockout before Django's own backend checks the password.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "worker_admin:overview"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

# Absolute: a relative STATIC_URL would take the /db/<name>/ prefix of whichever request
# read it first (Django caches it), and every other database's pages would miss their CSS.
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve static files straight from the app folders until `collectstatic` has filled
# STATIC_ROOT (demo, tests); whitenoise would otherwise warn about the missing folder.
WHITENOISE_USE_FINDERS = True
warnings.filterwarnings("ignore", message="No directory at")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
HTTPS = env_bool("HTTPS", False)
if HTTPS:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)

# Content-Security-Policy (django-csp): scripts and styles only from our own static files, no
# inline script or eval (htmx runs with allowEval off and its indicator styles off, base.html).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# Login throttling (django-axes, worker_admin/login_throttle.py): after LOGIN_FAILURE_LIMIT wrong
# passwords for one user name from one address, that pair is refused for LOGIN_COOLOFF_MINUTES;
# after LOGIN_ACCOUNT_FAILURE_LIMIT from any number of addresses, the account is. A success
# resets the counts. Its tables live in CONSOLE_SCHEMA with Django's own.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_ACCOUNT_FAILURE_LIMIT = env_int("LOGIN_ACCOUNT_FAILURE_LIMIT", 20, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15, minimum=1))
# One record per (user name, address): the account's count is their sum (login_throttle.py), so
# a success resets only its own address's count, never the failures an attacker ran up elsewhere.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_HANDLER = "worker_admin.login_throttle.ConsoleAxesHandler"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False  # no start-up banner on every command (the CLI's stderr is for errors)
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The number of reverse proxies in front of the console, each appending the address it saw to
# X-Forwarded-For; 0 (the default) means clients connect directly and the header is ignored.
# worker_admin/client_address.py reads the client's address by it, for the login throttle and
# /metrics; a system check (worker_admin/checks.py) warns when the settings contradict it.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)
AXES_CLIENT_IP_CALLABLE = "worker_admin.client_address.axes_client_ip"

# Payload fields shown as "redacted" on every page (worker_admin/redaction.py, docs/security.md):
# comma-separated paths such as `password,card.number,*.token,headers.authorization`.
REDACT_PAYLOAD_PATHS = env_list("REDACT_PAYLOAD_PATHS", [])
for _path in REDACT_PAYLOAD_PATHS:
    if "" in _path.split(".") or _path.split(".")[-1] in ("*", "**"):
        raise ImproperlyConfigured(
            f"REDACT_PAYLOAD_PATHS: “{_path}” is not a payload path (keys joined by dots, "
            "ending with a key name, e.g. card.number or *.token)."
        )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
