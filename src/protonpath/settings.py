"""Django settings for protonpath.

Everything that differs between a laptop, CI and a hospital server is read from the environment,
with safe defaults for a single-machine demo (SQLite and files under ``var/``).
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BASE_DIR.parent.parent
VAR_DIR = Path(os.environ.get("PROTONPATH_VAR_DIR", PROJECT_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = env_bool("DEBUG", False)
# Signs sessions, password-reset links and export links: a server must have its own. Only a
# developer's machine (DEBUG on) may run with the built-in one.
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment (a long random string, kept secret), "
            "or set DEBUG=1 on a developer's machine."
        )
    SECRET_KEY = "insecure-dev-key-change-me-in-production-0123456789"
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "django_tasks",
    "django_tasks_db",
    "protonpath.accounts",
    "protonpath.department",
    "protonpath.referrals",
]
# Domain apps a department may run without (say, one that takes no patient from abroad).
# PROTONPATH_APPS lists those to run; by default, every one whose package is present.
OPTIONAL_APPS = ("imaging", "international", "scheduling", "treatment")
_wanted = os.environ.get("PROTONPATH_APPS")
for optional_app in OPTIONAL_APPS:
    if _wanted is not None and optional_app not in {a.strip() for a in _wanted.split(",")}:
        continue
    if (BASE_DIR / optional_app / "apps.py").exists():
        INSTALLED_APPS.append(f"protonpath.{optional_app}")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "protonpath.security.SecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "protonpath.accounts.middleware.AuditContextMiddleware",
]

ROOT_URLCONF = "protonpath.urls"
WSGI_APPLICATION = "protonpath.wsgi.application"
ASGI_APPLICATION = "protonpath.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "protonpath.accounts.context_processors.role",
                "protonpath.accounts.context_processors.navigation",
            ],
            # {% colon %}: a label's colon in the active language's typography
            "builtins": ["protonpath.typography"],
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'protonpath.sqlite3'}"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers and one writer work together. Transactions take the write lock when they
    # begin (IMMEDIATE), so concurrent writers queue for up to the timeout instead of failing on a
    # stale snapshot half-way through (two bookings at once: the second waits, then sees the first).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # Tests use a database file like production, not SQLite's shared-cache memory database, whose
    # table locks fail at once instead of waiting when threads (DICOM listener, concurrent
    # bookings) write while the test reads.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("fr", _("French"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Europe/Paris"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Static files are served by the application itself (WhiteNoise), from the apps' folders when
# `collectstatic` has not been run: one process serves the whole department.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_ROOT = Path(os.environ.get("PROTONPATH_MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "/media-not-served/"  # documents are served only through permission-checked views
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Uploads: requests are streamed to disk above 2.5 MB; a document may not exceed this size.
PROTONPATH_MAX_DOCUMENT_BYTES = int(os.environ.get("PROTONPATH_MAX_DOCUMENT_BYTES", 50 * 1024 * 1024))
PROTONPATH_MAX_DICOM_UPLOAD_BYTES = int(os.environ.get("PROTONPATH_MAX_DICOM_UPLOAD_BYTES", 2 * 1024**3))
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# A DICOM folder upload sends one file (and one path field) per slice: CTs have hundreds.
DATA_UPLOAD_MAX_NUMBER_FILES = int(os.environ.get("PROTONPATH_MAX_UPLOAD_FILES", "5000"))
DATA_UPLOAD_MAX_NUMBER_FIELDS = 2 * DATA_UPLOAD_MAX_NUMBER_FILES + 100
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_500_000
FILE_UPLOAD_PERMISSIONS = 0o640

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "protontherapie@protonpath.invalid")
PROTONPATH_DEPARTMENT_NAME = os.environ.get("PROTONPATH_DEPARTMENT_NAME", "Proton therapy department")
PROTONPATH_BASE_URL = os.environ.get("PROTONPATH_BASE_URL", "http://127.0.0.1:8000")

TASKS = {
    "default": {
        # Database queue, run by `manage.py db_worker` (make demo starts one): plan calculations
        # never run inside a web request. Tests pick the immediate backend where they want it.
        "BACKEND": os.environ.get("TASKS_BACKEND", "django_tasks_db.DatabaseBackend"),
    }
}

# DICOM network node (C-STORE receiver, C-ECHO, C-FIND).
DICOM_AE_TITLE = os.environ.get("DICOM_AE_TITLE", "PROTONPATH")
DICOM_PORT = int(os.environ.get("DICOM_PORT", "11112"))
DICOM_BIND_ADDRESS = os.environ.get("DICOM_BIND_ADDRESS", "127.0.0.1")
# The calling AE titles of the hospitals and modalities allowed to send and query (comma-separated).
# Empty: any peer that knows our AE title may associate — acceptable on loopback only; set it
# before binding the listener to a network address.
DICOM_ALLOWED_CALLING_AE_TITLES = [
    t.strip() for t in os.environ.get("DICOM_ALLOWED_CALLING_AE_TITLES", "").split(",") if t.strip()
]
# Where approved plans go (the treatment machine's OIS): RT Ion Plan, RT Dose, RTSTRUCT by C-STORE.
# No host: plans are filed in the index and offered as a zip, not sent.
PLAN_DESTINATION_AE = os.environ.get("PLAN_DESTINATION_AE", "OIS")
PLAN_DESTINATION_HOST = os.environ.get("PLAN_DESTINATION_HOST", "")
PLAN_DESTINATION_PORT = int(os.environ.get("PLAN_DESTINATION_PORT", "104"))
# A running plan whose worker has not reported for this long is marked failed (worker lost).
PLAN_HEARTBEAT_TIMEOUT_S = float(os.environ.get("PLAN_HEARTBEAT_TIMEOUT_S", "60"))
DICOM_INCOMING_DIR = Path(os.environ.get("DICOM_INCOMING_DIR", VAR_DIR / "dicom-incoming"))
# What one peer may take from the listener (imaging/reactor.py). Sizes: the largest P-DATA-TF PDU
# we announce and accept, and the largest of any other PDU and of anything before the
# association (a request for 128 storage classes with every transfer syntax is 154 KiB); a peer
# announcing more is aborted before anything is allocated for it. Time limits, in seconds: connection to complete
# association request; a PDU header once begun; a PDU body once its header is in; an association
# with nothing received (idle); one DIMSE message from its first fragment to its last; the wait
# for a release answer. Open connections, in all and from one address (more are rejected at once,
# "local limit exceeded"). On SIGTERM or SIGINT the listener refuses new associations and gives
# the open ones DICOM_STOP_GRACE_S to finish before aborting them.
DICOM_MAX_PDU_BYTES = int(os.environ.get("DICOM_MAX_PDU_BYTES", str(4 * 1024 * 1024)))
DICOM_MAX_CONTROL_PDU_BYTES = int(os.environ.get("DICOM_MAX_CONTROL_PDU_BYTES", str(256 * 1024)))
DICOM_REQUEST_TIMEOUT_S = float(os.environ.get("DICOM_REQUEST_TIMEOUT_S", "10"))
DICOM_PDU_HEADER_TIMEOUT_S = float(os.environ.get("DICOM_PDU_HEADER_TIMEOUT_S", "10"))
DICOM_PDU_BODY_TIMEOUT_S = float(os.environ.get("DICOM_PDU_BODY_TIMEOUT_S", "60"))
DICOM_IDLE_TIMEOUT_S = float(os.environ.get("DICOM_IDLE_TIMEOUT_S", "60"))
DICOM_DIMSE_TIMEOUT_S = float(os.environ.get("DICOM_DIMSE_TIMEOUT_S", "300"))
DICOM_ACSE_TIMEOUT_S = float(os.environ.get("DICOM_ACSE_TIMEOUT_S", "30"))
DICOM_MAX_ASSOCIATIONS = int(os.environ.get("DICOM_MAX_ASSOCIATIONS", "32"))
DICOM_MAX_ASSOCIATIONS_PER_ADDRESS = int(os.environ.get("DICOM_MAX_ASSOCIATIONS_PER_ADDRESS", "8"))
# The largest DIMSE message (one instance), held in memory until complete.
DICOM_MAX_MESSAGE_BYTES = int(os.environ.get("DICOM_MAX_MESSAGE_BYTES", str(1024**3)))
DICOM_STOP_GRACE_S = float(os.environ.get("DICOM_STOP_GRACE_S", "30"))
# Each received instance is on disk (its journal slot synced, the slot's name synced when it was
# made) before the peer is told it is stored, so that a power cut loses nothing acknowledged; 0
# acknowledges once the file is complete in the page cache (safe from a killed listener, not from
# a power cut; one disk flush, about 3 ms, less per instance on a virtual disk).
DICOM_FSYNC = os.environ.get("DICOM_FSYNC", "1").strip().lower() not in ("0", "false", "no", "")
# With DICOM_FSYNC, the journal keeps this many slot files of zeros on disk, made while no
# association is open (incoming/.reserve/, 576 KiB each by default: 288 MiB): an instance written
# into one is flushed without the file system allocating its blocks, in about half the time
# (protonpath.imaging.reserve). 0 turns it off. It is not filled past what would leave the disk
# DICOM_JOURNAL_RESERVE_MIN_FREE_BYTES free.
DICOM_JOURNAL_RESERVE = int(os.environ.get("DICOM_JOURNAL_RESERVE", "512"))
DICOM_JOURNAL_RESERVE_SLOT_BYTES = int(os.environ.get("DICOM_JOURNAL_RESERVE_SLOT_BYTES", str(576 * 1024)))
DICOM_JOURNAL_RESERVE_MIN_FREE_BYTES = int(os.environ.get("DICOM_JOURNAL_RESERVE_MIN_FREE_BYTES", str(1024**3)))

# Cache: local memory by default (one per process). Where several processes serve the site, set a
# shared one so that they count sign-in failures together, e.g.
# CACHE_BACKEND=django.core.cache.backends.redis.RedisCache CACHE_LOCATION=redis://127.0.0.1:6379/0
CACHES = {
    "default": {
        "BACKEND": os.environ.get("CACHE_BACKEND", "django.core.cache.backends.locmem.LocMemCache"),
        "LOCATION": os.environ.get("CACHE_LOCATION", ""),
    }
}

# Sign-in throttling (accounts.throttle): after this many failed sign-ins for one account name, or
# from one address (higher: a hospital's staff may share one), within the window, sign-ins for
# that name or from that address are refused for the lockout time. 0 turns a limit off.
SIGNIN_MAX_FAILURES = int(os.environ.get("SIGNIN_MAX_FAILURES", "5"))
SIGNIN_MAX_FAILURES_PER_IP = int(os.environ.get("SIGNIN_MAX_FAILURES_PER_IP", "20"))
SIGNIN_WINDOW_S = int(os.environ.get("SIGNIN_WINDOW_S", str(15 * 60)))
SIGNIN_LOCKOUT_S = int(os.environ.get("SIGNIN_LOCKOUT_S", str(15 * 60)))
# A password reset link works once, and for this long.
PASSWORD_RESET_TIMEOUT = int(os.environ.get("PASSWORD_RESET_TIMEOUT_S", str(60 * 60)))

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
SESSION_COOKIE_AGE = 8 * 3600
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# HTTPS (see the README's production settings): redirect plain HTTP, and tell browsers to use HTTPS
# only, for SECURE_HSTS_SECONDS (0: no HSTS header, the default until HTTPS works end to end).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Behind a reverse proxy that terminates TLS and sets X-Forwarded-Proto (only then).
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Content-Security-Policy (protonpath.security): everything from the site itself, nothing inline.
CONTENT_SECURITY_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data: blob:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}

# Logs carry ids and actions, never names or medical content (see accounts.audit).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
    },
}
