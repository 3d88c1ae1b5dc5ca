"""Structured logs: with `LOG_FORMAT=json` every log line is one JSON object.

Each line carries the time, level, logger and message, and what is known of its context: the request id
(`X-Request-ID` from a proxy when it is a plain token, otherwise one made here, and sent back in the
response), the caller's site and API key prefix (never the key) once the partner API has authenticated
the request, the user id of an admin user, and the Celery task id in a worker.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import re
import uuid

from django.core.signals import request_finished
from django.dispatch import receiver

_request = contextvars.ContextVar("registry_request", default=None)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    """Gives each request an id and makes the request known to the log lines written while it is answered."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        offered = request.headers.get("X-Request-ID", "")
        request.request_id = offered if REQUEST_ID.match(offered) else uuid.uuid4().hex
        _request.set(request)
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response


@receiver(request_finished)
def _forget_request(sender=None, **kwargs):
    # Cleared when the response is done, not when the middleware returns: Django logs a 4xx or 5xx answer
    # ("Not Found: ...") after the middleware, and that line belongs to the request too.
    _request.set(None)


def _settled_user(request):
    """The request's user if it is already known; never a lookup of its own (no query from a log line)."""
    from django.utils.functional import SimpleLazyObject, empty

    user = request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject):
        user = user._wrapped
        if user is empty:
            return None
    return user


def context() -> dict:
    """The fields of the current request or task, for a log line."""
    fields: dict = {}
    request = _request.get()
    if request is not None:
        fields["request_id"] = getattr(request, "request_id", None)
        user = _settled_user(request)
        key = getattr(user, "key", None)  # a partner (registry.api.auth.Partner): the key's prefix, its site
        if key is not None:
            fields["api_key_prefix"] = key.prefix
            fields["site_id"] = key.site_id
        elif getattr(user, "is_authenticated", False) and getattr(user, "pk", None) is not None:
            fields["user_id"] = user.pk
    from celery import current_task

    task = current_task._get_current_object() if current_task else None
    if task is not None and getattr(task.request, "id", None):
        fields["task_id"] = task.request.id
        fields["task"] = task.name
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, context, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        with contextlib.suppress(Exception):  # a log line is never lost to its context
            line.update(context())
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)
