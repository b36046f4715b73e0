"""Django's PostgreSQL backend; in web processes each round trip to PostgreSQL is bounded.

A PostgreSQL that accepts connections and then never answers (its I/O frozen, a pooler in
front of a dead primary) left every web request that touched it waiting for good: its
kernel acknowledges everything, so libpq's keepalives and TCP user timeout see a live path,
and a lock or statement timeout is the server's own, which it does not get to. Once every
gunicorn thread waited, ``/healthz`` went unanswered too (operators' drill: 7 minutes of
hung requests, no log line).

In web processes (``TRACELEDGER_PROCESS=web``, set by ``traceledger.wsgi``) PostgreSQL
cancels a statement after ``TRACELEDGER_WEB_DB_TIMEOUT`` seconds itself (the sessions'
``statement_timeout``, ``traceledger.settings``: a slow server answers 503 "busy" and runs
nothing on for a client that left), and every wait of psycopg for the server (a query, a
fetch, a commit, Django's health-check ``SELECT 1``) gives up ``GRACE`` seconds later: a
server that did not even cancel is not answering at all. The connection, in an unknown
state mid-query, is dropped (as psycopg itself does when a cancelled query does not end),
and the request gets the ``OperationalError`` of an outage, answered 503. Workers and commands keep
their own limits (a task's soft time limit, lock and statement timeouts per transaction):
an ingest or a purge may rightly wait longer on a busy server.
"""

import logging

import psycopg
from django.conf import settings
from django.db.backends.postgresql import base

logger = logging.getLogger(__name__)

# Seconds the web waits past its statement_timeout for PostgreSQL's own cancellation.
GRACE = 2.0


class DeadlineConnection(psycopg.Connection):
    """psycopg's connection, whose waits for the server end after ``deadline`` seconds."""

    deadline: float = 0.0

    def wait(self, gen, interval=None, timeout=None):
        if timeout is None or timeout > self.deadline:
            timeout = self.deadline
        kwargs = {"timeout": timeout}
        if interval is not None:
            kwargs["interval"] = interval
        try:
            return super().wait(gen, **kwargs)
        except psycopg.errors.OperationalError as exc:
            if type(exc).__name__ != "_WaitTimeout":  # psycopg's, raised for our timeout
                raise
            self.pgconn.finish()
            logger.warning(
                "PostgreSQL did not answer within %g s: connection dropped",
                self.deadline,
                extra={"timeout": self.deadline},
            )
            raise psycopg.OperationalError(
                f"PostgreSQL did not answer within {self.deadline:g} s "
                "(TRACELEDGER_WEB_DB_TIMEOUT, then its own cancellation)"
            ) from None


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        timeout = settings.TRACELEDGER_WEB_DB_TIMEOUT
        if timeout and settings.TRACELEDGER_PROCESS == "web" and not self.pool:
            # psycopg opens its own class; the subclass only adds the bound to ``wait``.
            connection.__class__ = DeadlineConnection
            connection.deadline = timeout + GRACE
        return connection
