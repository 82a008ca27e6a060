"""DCP Portal settings, read from the environment with embedded defaults that need no service.

With no environment at all the portal runs on SQLite (WAL) and the in-memory channel layer in
DEBUG mode. `DATABASE_URL=postgres://...` and `REDIS_URL=redis://...` switch to PostgreSQL and
the Redis channel layer; `DEBUG=false` demands a real `SECRET_KEY` and turns on the secure
cookie and HTTPS settings that `manage.py check --deploy` asks for.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from dcp.protocol import limits

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is false")
    # Development only: a fixed key so that keys sealed at rest survive restarts of `make run`.
    SECRET_KEY = "dev-only-insecure-key-dcp-portal-do-not-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "allauth",
    "allauth.account",
    "portal.users",
    "portal.wallet",
    "portal.bank",
    "portal.scheduler",
    "portal.web",
    "portal.api",
    "portal.store",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "portal.urls"
ASGI_APPLICATION = "portal.asgi.application"
WSGI_APPLICATION = None

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

# --- Database ---------------------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=env_int("CONN_MAX_AGE", 60), conn_health_checks=True
        )
    }
else:
    SQLITE_PATH = Path(env_str("SQLITE_PATH", str(BASE_DIR / "var" / "db.sqlite3")))
    SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(SQLITE_PATH),
            # Websocket consumers reach the database from a pool of threads: each keeps its
            # connection instead of opening one per message.
            "CONN_MAX_AGE": env_int("CONN_MAX_AGE", 60),
            "OPTIONS": {
                # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at
                # BEGIN so two writers queue on busy_timeout instead of failing mid-transaction.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            # Tests use a file too (not SQLite's shared in-memory database, whose table locks
            # fail at once where a file's wait): the same locking as `make run`. One file per
            # test process, so that two runs side by side do not share it.
            "TEST": {"NAME": str(Path(tempfile.gettempdir()) / f"dcp-test-{os.getpid()}.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels ---------------------------------------------------------------------------------

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # No read timeout: the layer waits on Redis with blocking pops of 5 s, and
            # redis-py's default 5 s socket timeout would end a waiting consumer now and then
            # (docs/scaling.md, "A bug that drops idle workers").
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                "capacity": 5000,
                "expiry": 30,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Accounts (django-allauth) ----------------------------------------------------------------

AUTH_USER_MODEL = "users.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGOUT_REDIRECT_URL = "/"
LOGIN_REDIRECT_URL = "/portal/accounts/"
LOGIN_URL = "/accounts/login/"

# --- Email ------------------------------------------------------------------------------------

# In development verification links are printed by `make run`; in production, SMTP.
EMAIL_BACKEND_PATH = env_str(
    "EMAIL_BACKEND",
    "portal.users.mail.ConsoleEmailBackend"  # prints each email decoded, links whole
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
_MAIL_OPTIONS: dict[str, object] = {}
if EMAIL_BACKEND_PATH.endswith("smtp.EmailBackend"):
    _MAIL_OPTIONS = {
        "host": env_str("EMAIL_HOST", "localhost"),
        "port": env_int("EMAIL_PORT", 25),
        "username": env_str("EMAIL_HOST_USER"),
        "password": env_str("EMAIL_HOST_PASSWORD"),
        "use_tls": env_bool("EMAIL_USE_TLS", False),
    }
elif EMAIL_BACKEND_PATH.endswith("filebased.EmailBackend"):
    _MAIL_OPTIONS = {"file_path": env_str("EMAIL_FILE_PATH", str(BASE_DIR / "var" / "mail"))}
MAILERS = {"default": {"BACKEND": EMAIL_BACKEND_PATH, "OPTIONS": _MAIL_OPTIONS}}
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "DCP Portal <noreply@localhost>")

# --- Wallet -----------------------------------------------------------------------------------

# scrypt cost of the V3 keystores the portal hands out (2**14 is the light-client default).
KEYSTORE_SCRYPT_N = env_int("KEYSTORE_SCRYPT_N", 2**14)
if KEYSTORE_SCRYPT_N < 2 or KEYSTORE_SCRYPT_N & (KEYSTORE_SCRYPT_N - 1):
    raise ImproperlyConfigured("KEYSTORE_SCRYPT_N must be a power of two")

# --- Throttling (sign-in failures; portal/api/throttle.py, portal/users/admin.py) -------------

# Failed sign-ins, on allauth's login page and on the admin's alike (allauth counts them both):
# at most 10 a minute from one client IP and LOGIN_FAILURES per email address in
# LOGIN_FAILURE_MINUTES. Past either, the password is not checked.
LOGIN_FAILURES = env_int("LOGIN_FAILURES", 5)
LOGIN_FAILURE_MINUTES = env_int("LOGIN_FAILURE_MINUTES", 5)
ACCOUNT_RATE_LIMITS = {"login_failed": f"10/m/ip,{LOGIN_FAILURES}/{LOGIN_FAILURE_MINUTES}m/key"}
# Failed Basic (keystore) sign-ins to the API, as (failures, seconds): per client IP and per
# identity address. Past either, the keystore is not opened: 429 with Retry-After.
BASIC_AUTH_FAILURE_LIMITS = {
    "client": (env_int("BASIC_AUTH_CLIENT_FAILURES", 10), 60),
    "identity": (env_int("BASIC_AUTH_IDENTITY_FAILURES", 5), 300),
}
# A keystore and passphrase that opened are not opened again (no KDF) for this long.
BASIC_AUTH_VERIFIED_SECONDS = env_int("BASIC_AUTH_VERIFIED_SECONDS", 60)
# Key derivations that Basic sign-ins run at once (the other cores stay free for everyone
# else), and how long a sign-in waits for one of them before it is answered 503.
BASIC_AUTH_KDF_SLOTS = env_int("BASIC_AUTH_KDF_SLOTS", max(1, (os.cpu_count() or 2) // 2))
BASIC_AUTH_KDF_WAIT_SECONDS = env_int("BASIC_AUTH_KDF_WAIT_SECONDS", 10)
# Reverse proxies in front of the portal that append to X-Forwarded-For: the client address
# counted above is the one the outermost of them saw (0: X-Forwarded-For is ignored).
ALLAUTH_TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
# The counters above live in the cache: with REDIS_URL every process shares them (and the
# opened keystores); otherwise each process keeps its own (Django's local-memory cache).
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "portal",
        }
    }

# --- Scheduler --------------------------------------------------------------------------------

# A leased slice with no result and no progress for this long goes back to the queue.
SLICE_LEASE_SECONDS = env_int("SLICE_LEASE_SECONDS", 60)
# Progress renews a slice's lease only this long after it was handed out (then it lapses).
MAX_SLICE_SECONDS = env_int("MAX_SLICE_SECONDS", 3600)
# A worker's progress renews its leases of a job at most this often (leases last far longer).
PROGRESS_RENEW_SECONDS = float(env_str("PROGRESS_RENEW_SECONDS", "5"))
# Idle workers look for work this often when no wake-up reaches them.
DISPATCH_POLL_SECONDS = float(env_str("DISPATCH_POLL_SECONDS", "2"))
# A slice that failed on one worker is kept from that worker this long, for a retry elsewhere.
RETRY_ELSEWHERE_SECONDS = env_int("RETRY_ELSEWHERE_SECONDS", 5)
MAX_TASK_SLICES = env_int("MAX_TASK_SLICES", 2000)
MAX_SLICES_PER_JOB = env_int("MAX_SLICES_PER_JOB", 10_000_000)
# What both ends of a socket agree on (dcp.protocol.limits).
MAX_RESULTS_PER_FETCH = limits.MAX_RESULTS_PER_FETCH
# A REST results page stops at about this much JSON (with at least one result in it).
MAX_RESULTS_PAGE_BYTES = env_int("MAX_RESULTS_PAGE_BYTES", 8 * 1024 * 1024)
# Not an environment setting: the client and the Worker tab send frames up to the protocol's
# limit, so a server that took less would close their sockets (tests lower it, for small data).
MAX_FRAME_BYTES = limits.MAX_FRAME_BYTES
# Frames a second one socket may send (bursts of twice that); a flood past it is closed.
SOCKET_MESSAGES_PER_SECOND = env_int("SOCKET_MESSAGES_PER_SECOND", 200)
# Result verification (portal/scheduler/verification.py): a user whose results agreed this many
# times in a row is trusted by adaptive jobs; this many lost votes suspend a user's workers.
VERIFY_TRUSTED_STREAK = env_int("VERIFY_TRUSTED_STREAK", 10)
VERIFY_MAX_STRIKES = env_int("VERIFY_MAX_STRIKES", 3)
VERIFY_SUSPENSION_SECONDS = env_int("VERIFY_SUSPENSION_SECONDS", 600)
# Workers with neither a signed-in session nor a worker token may work, paid to the account
# address their hello names (portal/scheduler/worker_credentials.py). Off unless asked for.
ALLOW_ANONYMOUS_WORKERS = env_bool("ALLOW_ANONYMOUS_WORKERS", False)
# Origins (https://shop.example) whose pages may embed a worker with /dcp-client/dcp-worker.js,
# or "*" for any site (portal/web/worker_files.py). The portal's own pages always may; by
# default no one else.
WORKER_EMBED_ORIGINS = env_list("WORKER_EMBED_ORIGINS", [])
# The scheduler's commission on every paid result, in percent (a decimal, 0 to 100): taken
# from the worker's payment into the fees account (the job pays its offer either way).
SCHEDULER_COMMISSION_PERCENT = env_str("SCHEDULER_COMMISSION_PERCENT", "0")
# The market price of a CPU-second, in credits, while no recent job has metered results to
# take it from (portal/scheduler/selectors.py, market_price).
MARKET_CPU_SECOND_PRICE = env_str("MARKET_CPU_SECOND_PRICE", "0.001")
# The same for a GPU-second (what a market-value job pays for its slices' metered GPU time).
MARKET_GPU_SECOND_PRICE = env_str("MARKET_GPU_SECOND_PRICE", "0.01")
# What the REST API's "MARKET_VALUE" jobs put into their escrow per slice, in credits: the
# budget they pay per CPU-second from (a verified one pays this per result instead).
MARKET_SLICE_OFFER = env_str("MARKET_SLICE_OFFER", "0.001")
# A job deployed at market value runs this many slices first to estimate its cost
# (portal/scheduler/pricing.py).
MARKET_ESTIMATION_SLICES = env_int("MARKET_ESTIMATION_SLICES", 3)

# --- Static files, i18n -----------------------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "frontend" / "static"]
# Served by the portal itself (WhiteNoise): no CDN, ever. Without `collectstatic` WhiteNoise
# finds files through the finders, which keeps `make run` and the tests simple.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
WORKER_STATIC_DIR = BASE_DIR / "worker_static"
# An operator's Pyodide package repository (its pyodide-lock.json and package files), served
# over the core's Pyodide at /worker/vendor/pyodide/ (docs/packages.md, "For operators").
PYODIDE_PACKAGES_DIR = env_str("PYODIDE_PACKAGES_DIR")
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Security ---------------------------------------------------------------------------------

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # page scripts read it to send X-CSRFToken on fetch()
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Only a benchmark or a test on plain http turns these off (SECURE_COOKIES=false).
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}

# --- Store ------------------------------------------------------------------------------------

# The content-addressed store (portal/store/, docs/store.md): one file per object under
# STORE_DIR, by default beside the SQLite database (var/store/), or in var/store/ with
# DATABASE_URL. Several servers must share this folder.
_STORE_PARENT = BASE_DIR / "var" if DATABASE_URL else SQLITE_PATH.parent
STORE_DIR = Path(env_str("STORE_DIR", str(_STORE_PARENT / "store")))
# The largest object, and the most bytes the objects one user owns may add up to.
STORE_MAX_FILE_BYTES = env_int("STORE_MAX_FILE_BYTES", 256 * 1024 * 1024)
STORE_MAX_BYTES_PER_USER = env_int("STORE_MAX_BYTES_PER_USER", 2 * 1024 * 1024 * 1024)
