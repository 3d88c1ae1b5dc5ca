"""Connections kept between requests (`?conn_max_age=60` in DATABASE_URL, as docker-compose.yml sets it): one
whose server side has ended (PostgreSQL restarted, the backend killed) is replaced before a request uses it,
instead of failing that request."""

from __future__ import annotations

import pytest
from django.db import close_old_connections, connections

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _backend_pid(connection) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_a_kept_connection_whose_backend_ended_is_replaced_before_use():
    connection = connections["default"]
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True
    saved = connection.settings_dict["CONN_MAX_AGE"]
    connection.close()
    connection.settings_dict["CONN_MAX_AGE"] = 60
    try:
        close_old_connections()  # a request starts
        first = _backend_pid(connection)
        close_old_connections()  # it ends: the connection is kept
        assert _backend_pid(connection) == first
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [first])
        finally:
            other.close()
        close_old_connections()  # the next request starts
        second = _backend_pid(connection)  # without the health check: OperationalError (server closed)
        assert second != first
    finally:
        connection.close()
        connection.settings_dict["CONN_MAX_AGE"] = saved
