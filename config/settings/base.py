"""Settings shared by every environment. Every value comes from the environment, with local defaults.

The embedded default needs no services: SQLite under var/, Celery's filesystem transport under var/,
and e-mail written to files under var/mail/. Set DATABASE_URL, REDIS_URL and EMAIL_URL to use
PostgreSQL, Redis and SMTP instead.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(environ.Env().str("REGISTRY_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="local-only-insecure-key-do-not-use-in-production")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "config.apps.RegistryAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "simple_history",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "core",
    "registry",
    "patients",
    "followup",
    "quality",
    "notifications",
    "reporting",
    "intake",
]

MIDDLEWARE = [
    "config.logs.RequestContextMiddleware",
    "config.metrics.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "config.language.UserLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.audit.AuditDoorMiddleware",
    "axes.middleware.AxesMiddleware",
]

# Login: repeated failures lock the username *at that address* for a while (django-axes), so a mistyped or
# made-up name never locks the colleagues behind the same hospital NAT; a warning from the third failure on, and
# a lockout page (config/signin.py) naming how long and whom to contact. Two-factor sign-in (django-otp: an
# authenticator app, and one-time backup codes) is open to everyone and, when REGISTRY_REQUIRE_2FA is on,
# required of investigators, data managers and superusers (docs/sign-in.md).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.5)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "config.signin.lockout_response"
AXES_WARN_AFTER_FAILURES = 3
REGISTRY_SUPPORT_CONTACT = env.str("REGISTRY_SUPPORT_CONTACT", default="")
REGISTRY_REQUIRE_2FA = env.bool("DJANGO_REQUIRE_2FA", default=False)
OTP_TOTP_ISSUER = "MSCT registry"
SESSION_COOKIE_AGE = env.int("DJANGO_SESSION_COOKIE_AGE", default=8 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
                "config.admin.email_alert",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'registry.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# A connection kept between requests (`?conn_max_age=60` in DATABASE_URL) is checked before it is reused.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server and the Celery worker read while the other writes. A transaction takes the write
    # lock as it begins (IMMEDIATE), waiting up to `timeout` seconds for another writer to finish: one begun
    # as a reader (SQLite's default) that then writes after another writer has committed fails at once with
    # "database is locked", whatever the timeout.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update(
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
# Year-first date input in every language (config/formats/).
FORMAT_MODULE_PATH = ["config.formats"]
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
LOCALE_PATHS = [BASE_DIR / "locale"]

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# Celery: Redis when REDIS_URL is set, otherwise the filesystem transport under var/celery.
REDIS_URL = env.str("REDIS_URL", default="")
CELERY_FS_DIR = VAR_DIR / "celery"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
else:
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_FS_DIR / "queue"),
        "data_folder_out": str(CELERY_FS_DIR / "queue"),
        "processed_folder": str(CELERY_FS_DIR / "processed"),
        "control_folder": str(CELERY_FS_DIR / "control"),
        "store_processed": False,
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
# A worker that loses Redis keeps trying to reconnect, however long Redis is away (the default gives up after
# 100 tries, about 50 minutes, and the worker exits). A task running when the connection drops finishes; it is
# not cancelled (Celery 6 will cancel it by default), so its work is done once.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# E-mail: files under var/mail by default; EMAIL_URL (smtp://user:pass@host:port) for SMTP.
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="registry@localhost")
# Seconds any one SMTP operation (connect, a command, a reply) may take: a stalled mail server holds a worker
# this long at most, and the item is retried later. Keep it well under NOTIFICATION_CLAIM_TIMEOUT.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["registry.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["registry.api.auth.PartnerPermission"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.api.parsers.StrictJSONParser"],
    "EXCEPTION_HANDLER": "core.api.problems.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "api_key": env.str("API_RATE_LIMIT", default="600/minute"),
        # Requests whose authentication failed (no key, an unknown, revoked or expired one), per client address.
        "auth_failure": env.str("API_AUTH_FAILURE_RATE_LIMIT", default="30/minute"),
    },
    # The client's address is REMOTE_ADDR unless the server sits behind this many proxies that each append to
    # X-Forwarded-For (set it to 1 behind one reverse proxy); a client cannot choose its address with a header.
    "NUM_PROXIES": env.int("API_NUM_PROXIES", default=0),
    "COERCE_DECIMAL_TO_STRING": False,
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MSCT registry partner API",
    "DESCRIPTION": (
        "Partner hospitals post their patients' transplants, visits, results, medications and adverse events, "
        "and read back schedules and computed outcomes. Authenticate with `Authorization: Api-Key <key>` (a "
        "per-site key issued in the admin). Every list is scoped to the key's site and paginated by cursor, "
        "ordered by `updated_at` for incremental sync. POSTs accept `Idempotency-Key`; updates need `If-Match`. "
        "Errors are RFC 9457 problem details with a list of field errors."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SECURITY": [{"ApiKey": []}],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.api.schema.add_problem_responses",
        "core.api.schema.add_links",
    ],
    "ENUM_NAME_OVERRIDES": {
        "VisitOutcomeEnum": "followup.constants.VisitOutcome",
        "AEOutcomeEnum": "followup.constants.AEOutcome",
        "PatientStatusEnum": "patients.constants.PatientStatus",
        "StudyStatusEnum": "registry.constants.StudyStatus",
        "TestOutcomeEnum": "registry.constants.TestOutcome",
        "DrugEnum": "patients.constants.Drug",
        "ReleaseStatusEnum": "registry.constants.ReleaseStatus",
        "RecordStatusEnum": "followup.constants.RecordStatus",
        "NotDoneReasonEnum": "followup.constants.NotDoneReason",
    },
}
# The cache holds the API's throttle counters, which every web process must share: Redis when configured,
# otherwise a table of the database (made by the migration core.0001, so a fresh `migrate` is enough).
CACHE_TABLE = "core_cache"
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Bounded: a Redis that stops answering fails a request or a heartbeat in seconds, never holds it.
            "OPTIONS": {"socket_connect_timeout": 5, "socket_timeout": 5},
        }
        if REDIS_URL
        else {"BACKEND": "core.cache.DatabaseCache", "LOCATION": CACHE_TABLE}
    ),
    # Live progress of long jobs (an import runs in one database transaction, so its progress cannot be read
    # from the database until it ends): Redis when configured, otherwise files under var/, which the web
    # server and the worker of `make run` share.
    "progress": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 5, "socket_timeout": 5},
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(VAR_DIR / "progress")}
    ),
}

# The largest request body read (2.5 MB by default); the API answers 413 beyond it.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("API_MAX_BODY_BYTES", default=2_621_440)
# A CSRF failure under /api/ is a problem like every other API error (elsewhere Django's page).
CSRF_FAILURE_VIEW = "core.api.problems.csrf_failure"

# LOG_FORMAT=json: one JSON object per line, with the request id, site, API key prefix and task id (config/logs.py).
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "config.logs.JsonFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", **({"formatter": "json"} if LOG_FORMAT == "json" else {})}
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# History is corrected through services, with a reason; reverting from the history page would bypass them.
SIMPLE_HISTORY_REVERT_DISABLED = True
SIMPLE_HISTORY_HISTORY_CHANGE_REASON_USE_TEXT_FIELD = True  # reasons for change run to 2,000 characters

# Notifications: links in e-mails point here; a claim older than this (a worker that died) is taken again.
REGISTRY_BASE_URL = env.str("REGISTRY_BASE_URL", default="http://127.0.0.1:8000")
NOTIFICATION_CLAIM_TIMEOUT = env.int("NOTIFICATION_CLAIM_TIMEOUT", default=600)

# /metrics answers only a bearer token (METRICS_TOKEN) or the listed addresses; with neither it is not found.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=[])

# Finished exports (zip files) are written here and served only through the scoped download views.
EXPORT_DIR = Path(env.str("EXPORT_DIR", default=str(VAR_DIR / "exports")))

# The cohort report page (reporting/report_page.py): a report of at most this many patients in the user's
# scope is computed in the web request; a larger one by a worker while the page says so and polls. A claim on
# the computation lasts REPORT_COMPUTE_SECONDS: a task lost by the broker or a dead worker is queued again after.
REPORT_INLINE_MAX_PATIENTS = env.int("REPORT_INLINE_MAX_PATIENTS", default=2000)
REPORT_COMPUTE_SECONDS = env.int("REPORT_COMPUTE_SECONDS", default=600)
# A report taken less than this long ago is shown, saying when, rather than computed again for newer data: a
# registry whose data change every minute does not keep a worker computing the same report.
REPORT_REFRESH_SECONDS = env.int("REPORT_REFRESH_SECONDS", default=900)
