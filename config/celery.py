"""The Celery application. Periodic jobs are declared in one place: `config.schedule.BEAT_SCHEDULE`."""

import os
from pathlib import Path

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("registry")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _create_filesystem_broker_folders(sender, source, **kwargs):
    # The filesystem transport (the local default) fails on folders that do not exist, in the worker
    # and in any process that queues a task; create them as soon as the configuration is read.
    if not str(source.broker_url or "").startswith("filesystem://"):
        return
    options = source.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


@app.on_after_finalize.connect
def _install_beat_schedule(sender, **kwargs):
    from django.conf import settings

    from config.schedule import BEAT_SCHEDULE

    # A settings module may replace the schedule: tests/integration/fast_beat_settings.py runs the production
    # settings with the reminder sweep every few seconds, to watch real beat processes within a test.
    sender.conf.beat_schedule = getattr(settings, "REGISTRY_BEAT_SCHEDULE", None) or BEAT_SCHEDULE


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _json_logs(logger=None, **kwargs):
    # Celery sets up the worker's and beat's own log handlers; with LOG_FORMAT=json they write JSON lines too.
    from django.conf import settings

    if logger is None or getattr(settings, "LOG_FORMAT", "text") != "json":
        return
    from config.logs import JsonFormatter

    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())


from config import heartbeats  # noqa: E402,F401  (the signs of life of workers and beat: /healthz)
