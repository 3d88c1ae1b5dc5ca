"""Tasks that only the integration tests' workers load (`worker_settings.CELERY_IMPORTS`).

`probe_work` stands for a task with side effects that takes a while: it sleeps, appends its id to the
file named by INTEGRATION_PROBE_FILE (so the test counts how many times its work was done) and, with
`follow_up`, queues another probe the way `resume_exports` queues export builds.
"""

import os
import time

from celery import shared_task


@shared_task(bind=True, acks_late=True)
def probe_work(self, seconds: float, follow_up: bool = False) -> str:
    time.sleep(seconds)
    with open(os.environ["INTEGRATION_PROBE_FILE"], "a", encoding="utf-8") as handle:
        handle.write(f"{self.request.id}\n")
    if follow_up:
        probe_work.delay(0)
    return self.request.id
