"""Run a command and start it again whenever it exits: `python -m config.respawn COMMAND [ARGS...]`.

`make run` starts the Celery worker through it (Procfile.local), so a worker that exits (killed, out of
memory, an unrecoverable broker error) is back a moment later instead of leaving reminders unsent until
someone notices. Waits 1 second before the first restart, doubling up to 30 seconds while the command keeps
exiting within a minute of its start. SIGINT and SIGTERM (Ctrl-C, honcho stopping) are passed on to the
command, and then the wrapper exits with it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

FIRST_DELAY = 1.0
LONGEST_DELAY = 30.0
STEADY = 60.0  # a run longer than this resets the delay


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m config.respawn COMMAND [ARGS...]", file=sys.stderr)
        return 2
    state = {"child": None, "stopping": False}

    def stop(signum, frame):
        state["stopping"] = True
        child = state["child"]
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    delay = FIRST_DELAY
    while True:
        began = time.monotonic()
        child = subprocess.Popen(argv)
        state["child"] = child
        print(f"respawn: started {argv[0]} as pid {child.pid}", file=sys.stderr, flush=True)
        code = child.wait()
        if state["stopping"]:
            return code
        delay = FIRST_DELAY if time.monotonic() - began > STEADY else delay
        print(
            f"respawn: pid {child.pid} exited with {code}; starting again in {delay:.0f} s", file=sys.stderr, flush=True
        )
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not state["stopping"]:
            time.sleep(0.1)
        if state["stopping"]:
            return code
        delay = min(delay * 2, LONGEST_DELAY)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
