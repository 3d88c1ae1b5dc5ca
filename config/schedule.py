"""Every periodic job, in one place. Each entry's task calls a service that a management command also runs.

Celery beat reads this mapping (see `config.celery`). Each job works from database state, so a missed run
catches up and an extra run does nothing: a second beat (docs/operations.md, "Scaling out") sends no reminder
twice.
"""

import datetime as dt

from celery.schedules import crontab

# How often the reminder sweep runs; `/healthz` calls beat stale after twice this.
SWEEP_INTERVAL = dt.timedelta(minutes=15)

BEAT_SCHEDULE: dict[str, dict] = {
    # Reminders and safety checks: decide what is due (ledger rows), then send what is due.
    "sweep-reminders": {
        "task": "notifications.tasks.sweep_reminders",
        "schedule": crontab(minute=f"*/{SWEEP_INTERVAL.seconds // 60}"),
    },
    "run-safety-checks": {"task": "notifications.tasks.run_safety_checks", "schedule": crontab(minute="7,37")},
    "send-notifications": {"task": "notifications.tasks.send_notifications", "schedule": crontab(minute="*/5")},
    # Edit checks over every study (each recording runs them for its patient as it is saved).
    "run-edit-checks": {"task": "quality.tasks.run_study_edit_checks", "schedule": crontab(hour="2", minute="17")},
    # Exports whose task was lost (broker down when requested) or whose worker died are queued again.
    "resume-exports": {"task": "reporting.tasks.resume_exports", "schedule": crontab(minute="*/10")},
    # Imports asked for in the admin, likewise.
    "resume-imports": {"task": "intake.tasks.resume_imports", "schedule": crontab(minute="*/10")},
}
