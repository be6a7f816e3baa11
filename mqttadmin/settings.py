"""Settings for MQTT Admin, read from the environment (see .env.example).

With no environment at all the portal runs embedded: SQLite in var/, the in-memory
channel layer and Celery tasks executed eagerly in-process. DATABASE_URL switches to
PostgreSQL, REDIS_URL to channels-redis and a Celery broker on Redis.
"""

import os
import secrets
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from mqttadmin.lib.files import create_private, private_directory, private_sqlite

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")


def _read(name: str, cast: Callable[..., Any], default: Any) -> Any:
    """Read one variable; a value that does not parse names the variable."""
    try:
        return cast(name, default=default)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"{name} has an invalid value: {exc}") from exc


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(name: str, default: bool) -> bool:
    """A strict boolean: a typo must not silently turn a safety switch off."""
    raw = env.str(name, default="").strip().lower()
    if not raw:
        return default
    if raw in _TRUE | _FALSE:
        return raw in _TRUE
    raise ImproperlyConfigured(
        f"{name} must be one of 1/0, true/false, yes/no, on/off (got {raw!r})"
    )


VAR_DIR = Path(_read("MQTTADMIN_VAR_DIR", env.str, str(BASE_DIR / "var")))
# var/ holds the database and generated secrets: this user's only (0700).
private_directory(VAR_DIR)


def _generated_secret(filename: str, factory: Callable[[], str]) -> str:
    """A secret kept in var/ so it survives restarts of an embedded install."""
    path = VAR_DIR / filename
    if create_private(path, factory()):
        warnings.warn(
            f"Generated {path}; set the matching environment variable in production.",
            stacklevel=2,
        )
    return path.read_text().strip()


# Off unless DEBUG=1 is set: Django's debug pages show settings and tracebacks to
# whoever makes a request fail.
DEBUG: bool = _bool("DEBUG", False)
DATABASE_URL: str = _read("DATABASE_URL", env.str, "")
EMBEDDED: bool = not DATABASE_URL

SECRET_KEY: str = _read("SECRET_KEY", env.str, "")
if not SECRET_KEY:
    # An embedded install (one process, SQLite in var/) keeps a generated key in
    # var/; a distributed one shares a key between its processes, so it is set.
    if not (EMBEDDED or DEBUG):
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DATABASE_URL is set and DEBUG is off "
            "(e.g. SECRET_KEY=$(openssl rand -hex 32))."
        )
    SECRET_KEY = _generated_secret("secret_key", lambda: secrets.token_urlsafe(50))

ALLOWED_HOSTS: list[str] = _read(
    "ALLOWED_HOSTS", env.list, ["127.0.0.1", "localhost", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS: list[str] = _read("CSRF_TRUSTED_ORIGINS", env.list, [])
SITE_URL: str = _read("SITE_URL", env.str, "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "daphne",
    # django.contrib.admin with the portal's admin site (product-scoped).
    "mqttadmin.apps.PortalAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    # API tokens stored as digests (django-rest-knox), never in clear.
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "channels",
    "django_celery_beat",
    "axes",
    "csp",
    "mqttadmin",
    "alerts",
    "brokers",
    "history",
    "actions",
    "devices",
    "acl",
    "observe",
    "runtime",
    "dashboard",
    "localbroker",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # NUL in a query parameter or form field: a 400 naming it (mqttadmin.input_guard).
    "mqttadmin.input_guard.RefuseNulMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "mqttadmin.middleware.CurrentProductMiddleware",
    # After authentication: the user's chosen zone wins over the browser's.
    "mqttadmin.timezones.TimeZoneMiddleware",
    "csp.middleware.CSPMiddleware",
    "mqttadmin.security.SessionActivityMiddleware",
    "mqttadmin.accounts.PasswordChangeRequiredMiddleware",
    # Last, as django-axes asks: it turns a lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "mqttadmin.urls"
ASGI_APPLICATION = "mqttadmin.asgi.application"
WSGI_APPLICATION = "mqttadmin.wsgi.application"

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
                "mqttadmin.context_processors.navigation",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------
# SQLite, embedded or named by DATABASE_URL: the runtime's ingest commits batch
# after batch while pages and the API write. WAL lets pages read meanwhile.
# IMMEDIATE takes the write lock at BEGIN, so a transaction that read first never
# has to upgrade its lock (SQLite fails such an upgrade at once, without waiting),
# and the busy timeout then waits for the lock. SQLite's waiting is not a queue:
# under a sustained stream a writer can wait many seconds for a gap between two
# ingest batches (20 s were seen on a loaded 2-core machine), so the timeout is
# generous; a write that still times out answers 500.
SQLITE_BUSY_TIMEOUT_S: float = 60.0
_SQLITE_OPTIONS: dict[str, Any] = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": SQLITE_BUSY_TIMEOUT_S,
}
_DATABASE_SCHEMES = ("postgres", "postgresql", "pgsql", "psql", "sqlite")
if DATABASE_URL and DATABASE_URL.split("://", 1)[0] not in _DATABASE_SCHEMES:
    raise ImproperlyConfigured(
        "DATABASE_URL has an unsupported scheme; use postgres://user:password@host:5432"
        "/dbname (or sqlite:////absolute/path.sqlite3)"
    )
if DATABASE_URL:
    try:
        _db = environ.Env.db_url_config(DATABASE_URL)
    except (ImproperlyConfigured, ValueError, KeyError) as exc:
        raise ImproperlyConfigured(
            f"DATABASE_URL is invalid ({exc}); expected e.g. "
            "postgres://user:password@host:5432/dbname"
        ) from exc
    _db.setdefault("CONN_MAX_AGE", 60)
    _db["CONN_HEALTH_CHECKS"] = True
    if _db["ENGINE"] == "django.db.backends.postgresql":
        _db.setdefault("OPTIONS", {})["connect_timeout"] = 5
    elif _db["ENGINE"] == "django.db.backends.sqlite3" and _db.get("NAME") not in (
        "",
        ":memory:",
    ):
        private_sqlite(Path(_db["NAME"]))
    if _db["ENGINE"] == "django.db.backends.sqlite3":
        # Options in the URL's query string win over these.
        _db["OPTIONS"] = {**_SQLITE_OPTIONS, **_db.get("OPTIONS", {})}
    DATABASES = {"default": _db}
else:
    # 0600 before SQLite first opens it; its -wal and -shm files inherit the mode.
    private_sqlite(VAR_DIR / "mqttadmin.sqlite3")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "mqttadmin.sqlite3",
            # A file, not pytest's shared in-memory database: the runtime's threads
            # write while tests read, which the in-memory shared cache refuses.
            # One per process, so parallel test runs never share it.
            "TEST": {
                "NAME": str(
                    Path(tempfile.gettempdir())
                    / f"mqttadmin-test-{os.getpid()}.sqlite3"
                )
            },
            "OPTIONS": _SQLITE_OPTIONS,
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer and Celery ---------------------------------------------
REDIS_URL: str = _read("REDIS_URL", env.str, "")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(
        "REDIS_URL must start with redis://, rediss:// or unix:// "
        "(e.g. redis://127.0.0.1:6379/0)"
    )

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # channels-redis blocks up to 5 s on a receive; redis-py's own 5 s
                # socket timeout would cut idle receives short.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30}],
                "capacity": 1000,
                "expiry": 10,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# API throttle counters must be shared by every web process.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "mqttadmin",
        }
    }

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
# Embedded mode runs tasks in-process; with Redis they go to workers.
CELERY_TASK_ALWAYS_EAGER: bool = _bool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
HISTORY_PRUNE_SECONDS: int = _read("HISTORY_PRUNE_SECONDS", env.int, 600)
# Action runs still pending after this many seconds were lost on the way to a worker
# (a worker killed mid-task, Redis restarted empty or down when they were queued):
# beat's sweep, which runs this often, hands them to workers again, so they run
# within twice this time. Redis itself would only redeliver a killed worker's task
# after its visibility timeout (an hour).
MQTTADMIN_ACTIONS_SWEEP_S: int = _read("MQTTADMIN_ACTIONS_SWEEP_S", env.int, 60)
if MQTTADMIN_ACTIONS_SWEEP_S < 1:
    raise ImproperlyConfigured("MQTTADMIN_ACTIONS_SWEEP_S must be 1 or more seconds")
# Static entries; django-celery-beat's DatabaseScheduler copies them into its tables.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "prune-history": {
        "task": "brokers.prune_history",
        "schedule": HISTORY_PRUNE_SECONDS,
    },
    "sweep-action-runs": {
        "task": "brokers.sweep_action_runs",
        "schedule": float(MQTTADMIN_ACTIONS_SWEEP_S),
    },
    "devices-check-health": {"task": "devices.check_health", "schedule": 30.0},
    "devices-prune-telemetry": {
        "task": "devices.prune_telemetry",
        "schedule": HISTORY_PRUNE_SECONDS,
    },
}
# Alert when an enabled broker stays disconnected longer than this (seconds).
DEVICES_BROKER_DOWN_ALERT_S: int = _read("DEVICES_BROKER_DOWN_ALERT_S", env.int, 300)
# $SYS statistics: one time-series sample every N s, kept this long; N refused
# logins within the window open an alert (observe.sys_stats, observe.client_log).
BROKER_STATS_SAMPLE_S: float = _read("BROKER_STATS_SAMPLE_S", env.float, 10.0)
BROKER_STATS_RETENTION_S: float = _read("BROKER_STATS_RETENTION_S", env.float, 86400.0)
BROKER_REFUSED_LOGIN_BURST: int = _read("BROKER_REFUSED_LOGIN_BURST", env.int, 5)
BROKER_REFUSED_LOGIN_WINDOW_S: float = _read(
    "BROKER_REFUSED_LOGIN_WINDOW_S", env.float, 60.0
)
# A broker's dropped-messages alert resolves once its $SYS dropped counter has not
# grown for this long (observe.broker_drops).
BROKER_DROPS_QUIET_S: float = 300.0
# The queue subscription actions run on (workers: `-Q celery,actions`).
MQTTADMIN_ACTIONS_QUEUE: str = _read("MQTTADMIN_ACTIONS_QUEUE", env.str, "actions")
CELERY_TASK_ROUTES = {"brokers.run_actions": {"queue": MQTTADMIN_ACTIONS_QUEUE}}
# What ingest does with a batch, in this order, inside one transaction: each app
# that consumes messages names its sink here (mqttadmin.pipeline); the runtime
# names none of them. Code, not configuration: not read from the environment.
MQTTADMIN_INGEST_SINKS: list[str] = [
    "observe.sinks.SysSink",
    "history.sinks.HistorySink",
    "brokers.sinks.SubscriptionSink",
    "actions.sinks.ActionRunSink",
    "devices.sinks.TelemetrySink",
]

# --- Auth -----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation."
        "UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:overview"
LOGOUT_REDIRECT_URL = "login"

# --- Security ---------------------------------------------------------------------
# MQTTADMIN_TLS=1 when users reach the portal over https (directly or through a proxy):
# it turns on secure cookies, the https redirect and HSTS, each still overridable.
MQTTADMIN_TLS: bool = _bool("MQTTADMIN_TLS", False)
SESSION_COOKIE_SECURE: bool = _bool("SESSION_COOKIE_SECURE", MQTTADMIN_TLS)
CSRF_COOKIE_SECURE: bool = _bool("CSRF_COOKIE_SECURE", MQTTADMIN_TLS)
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT: bool = _bool("SECURE_SSL_REDIRECT", MQTTADMIN_TLS)
# Load balancers probe the health check over plain http.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# Empty (as in .env.example) means "follow MQTTADMIN_TLS".
SECURE_HSTS_SECONDS: int = (
    _read("SECURE_HSTS_SECONDS", env.int, 0)
    if env.str("SECURE_HSTS_SECONDS", default="").strip()
    else (31536000 if MQTTADMIN_TLS else 0)
)
SECURE_HSTS_INCLUDE_SUBDOMAINS: bool = _bool(
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", SECURE_HSTS_SECONDS > 0
)
SECURE_HSTS_PRELOAD: bool = _bool("SECURE_HSTS_PRELOAD", SECURE_HSTS_SECONDS > 0)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if _bool("USE_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# How many reverse proxies in front of the portal append to X-Forwarded-For. 0 trusts
# only the connection's address (REMOTE_ADDR): a client could forge the header.
MQTTADMIN_TRUSTED_PROXY_COUNT: int = _read("MQTTADMIN_TRUSTED_PROXY_COUNT", env.int, 0)
if MQTTADMIN_TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured("MQTTADMIN_TRUSTED_PROXY_COUNT must be 0 or more")

# Outbound policy (mqttadmin.lib.outbound): webhooks reach public addresses only.
# Comma-separated addresses, CIDR ranges and host names opened on top, e.g.
# 10.0.0.0/8,127.0.0.1,hooks.internal,*.corp.example
MQTTADMIN_OUTBOUND_ALLOW: list[str] = [
    entry.strip()
    for entry in _read("MQTTADMIN_OUTBOUND_ALLOW", env.list, [])
    if entry.strip()
]
try:
    from mqttadmin.lib.outbound import parse_allow

    parse_allow(MQTTADMIN_OUTBOUND_ALLOW)
except ValueError as exc:
    raise ImproperlyConfigured(f"MQTTADMIN_OUTBOUND_ALLOW: {exc}") from exc

# Content Security Policy: no inline scripts or styles anywhere (JS lives in
# static/js/, htmx's indicator styles are off via the htmx-config meta tag).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'", "ws:", "wss:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# Login brute force (django-axes): a username is locked from one address after
# AXES_FAILURE_LIMIT failures, so one attacker cannot lock out everyone behind the
# same proxy, and other addresses can still log in as that user.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT: int = _read("AXES_FAILURE_LIMIT", env.int, 5)
AXES_COOLOFF_TIME: float = _read("AXES_COOLOFF_MINUTES", env.float, 15.0) / 60
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The client address rule of MQTTADMIN_TRUSTED_PROXY_COUNT, shared with the API
# throttles and the sessions list (django-ipware is not a dependency).
AXES_CLIENT_IP_CALLABLE = "mqttadmin.security.client_ip"
AXES_VERBOSE = False

# --- I18N / static ----------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = _read("TIME_ZONE", env.str, "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# Serve straight from the app and project folders: no collectstatic step to forget.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- E-mail -----------------------------------------------------------------------
EMAIL_CONFIG = _read("EMAIL_URL", env.email_url, "consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL: str = _read(
    "DEFAULT_FROM_EMAIL", env.str, "MQTT Admin <mqttadmin@localhost>"
)


# --- REST API -----------------------------------------------------------------------
def _rate(name: str, default: str) -> str:
    """A DRF throttle rate such as 600/minute; checked now, not on the first call."""
    value = _read(name, env.str, default).strip()
    number, _, period = value.partition("/")
    if not number.isdigit() or period[:1] not in {"s", "m", "h", "d"}:
        raise ImproperlyConfigured(
            f"{name} must look like 600/minute (periods: second, minute, hour, day); "
            f"got {value!r}"
        )
    return value


MQTTADMIN_API_RATE: str = _rate("MQTTADMIN_API_RATE", "3000/minute")
MQTTADMIN_API_ANON_RATE: str = _rate("MQTTADMIN_API_ANON_RATE", "300/minute")
# Broker connection tests (page and API share the count): each opens a TCP
# connection from the portal's network, so they are a per-user budget.
MQTTADMIN_BROKER_TEST_RATE: str = _rate("MQTTADMIN_BROKER_TEST_RATE", "20/minute")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # `Authorization: Token <key>`; the database keeps only the key's digest.
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # The browsable pages get their inline styles per response (not the portal's).
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "mqttadmin.api.renderers.BrowsableAPIRendererWithStyles",
    ],
    # Bounded JSON (size, depth), NUL refused (mqttadmin.api.parsers).
    "DEFAULT_PARSER_CLASSES": [
        "mqttadmin.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["mqttadmin.api.filters.BoundedFilterBackend"],
    # Per token (or user) and per client address for anonymous calls; 429 with
    # Retry-After past the rate.
    "DEFAULT_THROTTLE_CLASSES": [
        "mqttadmin.api.throttles.TokenRateThrottle",
        "mqttadmin.api.throttles.AnonymousRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "token": MQTTADMIN_API_RATE,
        "anonymous": MQTTADMIN_API_ANON_RATE,
    },
    "NUM_PROXIES": MQTTADMIN_TRUSTED_PROXY_COUNT,
    "DEFAULT_PAGINATION_CLASS": "mqttadmin.api.pagination.Pagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "mqttadmin.api.exceptions.api_exception_handler",
    # `?format=csv|ndjson` selects history exports, not DRF renderers.
    "URL_FORMAT_OVERRIDE": None,
}

# API tokens live until revoked: by the user, or when their password changes or
# the account is deactivated (mqttadmin.security).
REST_KNOX = {
    "TOKEN_TTL": None,
    "AUTH_HEADER_PREFIX": "Token",
    "AUTO_REFRESH": False,
}
# Each request for a token issues a new one; beyond this many the oldest go.
MQTTADMIN_TOKENS_PER_USER: int = _read("MQTTADMIN_TOKENS_PER_USER", env.int, 10)
if MQTTADMIN_TOKENS_PER_USER < 1:
    raise ImproperlyConfigured("MQTTADMIN_TOKENS_PER_USER must be 1 or more")

SPECTACULAR_SETTINGS = {
    "TITLE": "MQTT Admin API",
    "DESCRIPTION": "Broker connections, subscriptions, devices and managed Mosquitto.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- MQTT runtime -------------------------------------------------------------------
MQTTADMIN_REQUIRE_SERVICES: bool = _bool("MQTTADMIN_REQUIRE_SERVICES", False)

# The largest devices CSV file an import reads (bytes); 50,000 rows fit in 5 MiB.
MQTTADMIN_DEVICE_IMPORT_MAX_BYTES: int = _read(
    "MQTTADMIN_DEVICE_IMPORT_MAX_BYTES", env.int, 5 * 1024 * 1024
)
if MQTTADMIN_DEVICE_IMPORT_MAX_BYTES < 1024:
    raise ImproperlyConfigured("MQTTADMIN_DEVICE_IMPORT_MAX_BYTES must be 1024 or more")
# Fernet keys for broker secrets, newest first (see mqttadmin.lib.crypto).
MQTTADMIN_SECRET_KEYS: list[str] = _read("MQTTADMIN_SECRET_KEYS", env.list, [])
# Decided at start-up: test runners turn DEBUG off later, which must not change it.
MQTTADMIN_GENERATE_SECRET_KEYS: bool = EMBEDDED or DEBUG
# `serve`'s local Mosquitto: its binary and Dynamic Security plugin; empty finds
# them (PATH, /usr/sbin; /usr/lib/<arch>/, /usr/local/lib, Homebrew).
MQTTADMIN_MOSQUITTO: str = _read("MQTTADMIN_MOSQUITTO", env.str, "")
MQTTADMIN_DYNSEC_PLUGIN: str = _read("MQTTADMIN_DYNSEC_PLUGIN", env.str, "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    },
    "filters": {"plain_refusals": {"()": "mqttadmin.errors.PlainRefusals"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": _read("LOG_LEVEL", env.str, "INFO")},
    "loggers": {
        # Django's own handlers (a console one under DEBUG) would print each
        # record a second time: the root's handler is the one place.
        "django": {"handlers": [], "level": "INFO"},
        # A refused request (403) is one line, without a traceback.
        "django.request": {"filters": ["plain_refusals"]},
        "daphne": {"level": "WARNING"},
        # django-axes reports every successful login at INFO; lockouts are WARNING.
        "axes": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
    },
}
