"""Local development: the embedded default, with DEBUG on unless the environment says otherwise."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)

# The demo study and the synthetic cohort (seed_demo, seed_synthetic); not in production.
INSTALLED_APPS = [*INSTALLED_APPS, "devdata"]  # noqa: F405
