"""Test settings: SQLite by default, PostgreSQL and Redis when DATABASE_URL / REDIS_URL are set."""

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# The demo study and the synthetic cohort (seed_demo, seed_synthetic); not in production.
INSTALLED_APPS = [*INSTALLED_APPS, "devdata"]  # noqa: F405

# Without Redis, each test process keeps its cache in memory: the tests pin query counts, which the database
# cache would change with every throttled request (tests/api/test_hostile_requests.py tests that cache).
if not REDIS_URL:  # noqa: F405
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "progress": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "progress"},
    }

# Under pytest-xdist each worker process gets its own Redis database, so one worker's flush or
# cache entries never reach another's: worker gwN uses database (D - N) mod 16 of REDIS_URL's D.
_XDIST_WORKER = env.str("PYTEST_XDIST_WORKER", default="")  # noqa: F405
if REDIS_URL and _XDIST_WORKER.startswith("gw"):  # noqa: F405
    from urllib.parse import urlsplit, urlunsplit

    _parts = urlsplit(REDIS_URL)  # noqa: F405
    _base_db = int(_parts.path.strip("/") or 0)
    _worker_db = (_base_db - int(_XDIST_WORKER[2:])) % 16
    REDIS_URL = urlunsplit(_parts._replace(path=f"/{_worker_db}"))
    CELERY_BROKER_URL = REDIS_URL
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL},
        "progress": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL},
    }
