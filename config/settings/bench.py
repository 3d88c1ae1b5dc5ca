"""Benchmark settings (`make bench` only): the production stack's behaviour, plus bare baseline views.

The bare views live in `bench.urls`, never in the production URLconf.
"""

from .base import *  # noqa: F403

DEBUG = False
ROOT_URLCONF = "bench.urls"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

# The demo study and the synthetic cohort (seed_demo, seed_synthetic); not in production.
INSTALLED_APPS = [*INSTALLED_APPS, "devdata"]  # noqa: F405
