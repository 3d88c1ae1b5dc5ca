"""Threads released together on a barrier, the set-up of the race tests (docs/STYLE.md's "Races reproduced,
then fixed"): each thread works on its own database connection, closed when it ends, and what it returned or
raised comes back to the test's thread."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import requests
from django.db import connections


def released_together(
    n: int,
    work: Callable[[int], object],
    *,
    within: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    reraise: bool = False,
) -> list:
    """`work(index)` run by n threads released together; what each returned, or the exception it raised, by
    index. Each thread enters `within()` before the barrier and leaves it after its work (`transaction.atomic`:
    a transaction each, open while they wait). With `reraise`, the first exception is raised in the test's
    thread instead."""
    barrier = threading.Barrier(n)
    outcomes: list = [None] * n

    def run(index: int) -> None:
        try:
            with within():
                barrier.wait(timeout=30)
                outcomes[index] = work(index)
        except BaseException as exc:  # noqa: BLE001 - returned to the test's thread
            outcomes[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if reraise:
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
    return outcomes


def burst(n: int, send: Callable[[requests.Session], requests.Response]) -> list[requests.Response]:
    """`send(session)` run by n threads released together, each with its own HTTP session; their answers (an
    exception in a thread is raised in the test's)."""
    sessions = [requests.Session() for _ in range(n)]
    try:
        return released_together(n, lambda index: send(sessions[index]), reraise=True)
    finally:
        for session in sessions:
            session.close()
