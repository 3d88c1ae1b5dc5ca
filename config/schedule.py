"""Every periodic job, in one place. Each entry's task calls a service that a management command also runs.

Celery beat reads this mapping (see `config.celery`); exactly one beat process may run.
"""

BEAT_SCHEDULE: dict[str, dict] = {}
