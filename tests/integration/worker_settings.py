"""Settings of the Celery workers started by the fault tests: the local settings (SMTP from EMAIL_URL,
Redis from REDIS_URL) with the broker's redelivery made fast enough to observe within a test.

`INTEGRATION_VISIBILITY_TIMEOUT` (seconds) replaces the one-hour visibility timeout of the Redis broker,
so that a task left unacknowledged by a killed worker is delivered again a few seconds later.
"""

from config.settings.local import *  # noqa: F403
from config.settings.local import env

CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS,  # noqa: F405
    "visibility_timeout": env.int("INTEGRATION_VISIBILITY_TIMEOUT", default=3600),
    # Look for abandoned messages every second instead of every 100 seconds.
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}

# The probe tasks of the broker-loss test (tests/integration/probe_tasks.py).
CELERY_IMPORTS = ("tests.integration.probe_tasks",)
