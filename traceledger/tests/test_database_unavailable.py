"""Admin pages while PostgreSQL is unreachable: 503 with Retry-After, not "Server Error (500)"."""

import http.client
import socket

import psycopg
import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.db import OperationalError
from django.test import Client

from accounts.models import User


def _refused(*args, **kwargs):
    raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")


@pytest.fixture
def logged_in(db):
    user = User.objects.create_superuser(username="root-dbdown", password="violet-Anchor-47-river")
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


@pytest.mark.parametrize("path", ["/admin/", "/admin/audit/auditevent/", "/admin/login/"])
def test_a_page_whose_session_cannot_be_read_is_a_503(logged_in, monkeypatch, path):
    monkeypatch.setattr(SessionStore, "_get_session_from_db", _refused)

    response = logged_in.get(path)

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "The database cannot be reached" in response.content.decode()
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("cause", ["LockNotAvailable", "QueryCanceled"])
def test_a_lock_or_statement_timeout_is_a_503_that_says_busy_not_unreachable(
    logged_in, monkeypatch, cause
):
    """A row another action held past TRACELEDGER_WEB_LOCK_TIMEOUT said "The database
    cannot be reached" (QA: an admin delete of a locked user)."""

    def timed_out(*args, **kwargs):
        try:
            raise getattr(psycopg.errors, cause)("canceling statement due to lock timeout")
        except psycopg.Error as exc:
            raise OperationalError("canceling statement due to lock timeout") from exc

    monkeypatch.setattr(SessionStore, "_get_session_from_db", timed_out)

    response = logged_in.get("/admin/")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    page = response.content.decode()
    assert "The database is busy" in page and "cannot be reached" not in page


def test_a_session_that_cannot_be_saved_is_a_503_too(logged_in, monkeypatch):
    """Raised by SessionMiddleware after the view, where no process_exception runs:
    handler500 answers it."""
    monkeypatch.setattr(SessionStore, "save", _refused)

    def touch(request):
        request.session["seen"] = True

    monkeypatch.setattr("django.contrib.admin.sites.AdminSite.each_context", _touching(touch))
    response = logged_in.get("/admin/")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"


def _touching(touch):
    from django.contrib.admin.sites import AdminSite

    original = AdminSite.each_context

    def each_context(self, request):
        touch(request)
        return original(self, request)

    return each_context


def test_other_errors_are_still_500s(logged_in, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError

    monkeypatch.setattr(SessionStore, "_get_session_from_db", broken)

    assert logged_in.get("/admin/").status_code == 500


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.integration
def test_under_gunicorn_without_postgresql_the_admin_answers_503(gunicorn_with):
    port = gunicorn_with(
        DATABASE_URL=f"postgres://127.0.0.1:{_closed_port()}/traceledger",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="test-key-" * 6,
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_SSL_REDIRECT="0",
    )
    for path in ("/admin/", "/admin/audit/auditevent/?q=x"):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        conn.request("GET", path, headers={"Cookie": "sessionid=abcdefghijklmnopqrstuvwxyz012345"})
        response = conn.getresponse()
        body = response.read().decode()
        conn.close()

        assert response.status == 503, body[:300]
        assert response.getheader("Retry-After") == "5"
        assert "The database cannot be reached" in body
