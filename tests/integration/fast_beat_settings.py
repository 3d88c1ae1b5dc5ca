"""The production settings with a beat schedule fast enough to watch within a test: the reminder sweep (which
queues the sender when it commits) every `FAST_BEAT_SECONDS` seconds, nothing else. Used by the beat processes of
tests/integration/test_production_smoke.py and tests/integration/test_two_beats.py; config/celery.py reads
REGISTRY_BEAT_SCHEDULE.
"""

import datetime as dt

from config.schedule import BEAT_SCHEDULE
from config.settings.production import *  # noqa: F403
from config.settings.production import env

REGISTRY_BEAT_SCHEDULE = {
    "sweep-reminders": {
        **BEAT_SCHEDULE["sweep-reminders"],
        "schedule": dt.timedelta(seconds=env.float("FAST_BEAT_SECONDS", default=2.0)),
    }
}
