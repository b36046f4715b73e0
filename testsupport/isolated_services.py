"""The test suite's own RabbitMQ vhost and Redis database, so that it can run beside `make run`.

Tests purge ``audit.ingest`` and its dead-letter queue and clear the cache. On the vhost and
the Redis database a running stack uses, that dropped the stack's accepted events and its
cached API keys, and the stack's worker consumed the tests' messages. Django already gives
the tests a database of their own (``test_<name>``); this plugin does the same for the
broker and Redis, on the same servers:

- ``CELERY_BROKER_URL``: vhost ``TRACELEDGER_TEST_VHOST`` (default ``traceledger_test``),
  created with ``rabbitmqctl`` on a local broker when it is missing;
- ``REDIS_URL``: database ``TRACELEDGER_TEST_REDIS_DB`` (default 14; the benchmark has 15).

The tests' settings module (``testsupport/settings.py``) rewrites the environment before the
product's settings read it; the workers and web servers the tests start inherit it. The
root conftest creates the vhost at the start of the session.
"""

import os
import re
import shutil
import subprocess
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from traceledger.broker_policy import policy_apply

DEFAULT_BROKER_URL = "amqp://guest:guest@localhost:5672//"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


def broker_url_with_vhost(value: str, vhost: str) -> str:
    """Each of kombu's ``;``-separated failover URLs, on ``vhost``."""
    return ";".join(
        urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))
        for parts in map(urlsplit, value.split(";"))
    )


def redis_url_with_db(value: str, db: int) -> str:
    """Each of django-redis's ``,``-separated URLs, on database ``db`` (``/N``, or ``?db=N``
    for a ``unix://`` socket, whose path is the socket's)."""
    urls = []
    for one in value.split(","):
        base, _, query = one.partition("?")
        params = [p for p in query.split("&") if p and not p.startswith("db=")]
        if urlsplit(one).scheme.lower() == "unix":
            # Not through urlunsplit: it writes unix:///path back as unix:/path.
            urls.append(f"{base}?{'&'.join([*params, f'db={db}'])}")
        else:
            parts = urlsplit(base)._replace(path=f"/{db}", query="&".join(params))
            urls.append(urlunsplit(parts))
    return ",".join(urls)


def _test_redis_db() -> int:
    value = os.environ.get("TRACELEDGER_TEST_REDIS_DB", "14")
    if not re.fullmatch(r"[0-9]+", value):
        raise SystemExit(f"TRACELEDGER_TEST_REDIS_DB must be a whole number, not {value!r}")
    return int(value)


def vhost_ensure(broker_url: str) -> None:
    """Creates the vhost of ``broker_url`` with ``rabbitmqctl`` when it is missing and the
    broker is local (elsewhere it has to exist already, see ``vhost_missing_message``), and
    sets the at-least-once dead-letter policy on it, as ``make run`` does: the tests run
    against the topology operators run (``traceledger/broker_policy.py``)."""
    parts = urlsplit(broker_url.split(";")[0])
    vhost = unquote(parts.path[1:]) or "/"
    ctl = shutil.which("rabbitmqctl")
    if vhost == "/" or parts.hostname not in LOCAL_HOSTS or ctl is None:
        return
    # rabbitmqctl can hang on a wedged node: bounded, so the run fails instead of hanging.
    listed = subprocess.run(
        [ctl, "-q", "list_vhosts"], capture_output=True, text=True, check=False, timeout=60
    )
    if listed.returncode != 0:
        return
    if vhost not in listed.stdout.split("\n"):
        user = unquote(parts.username or "guest")
        subprocess.run([ctl, "-q", "add_vhost", vhost], check=True, timeout=60)
        subprocess.run(
            [ctl, "-q", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
            check=True,
            timeout=60,
        )
    policy_apply(vhost)


def vhost_missing_message(broker_url: str) -> str | None:
    """What to do when the broker answers but has no such vhost; None when it has one (or
    cannot be reached: the tests then report the broker outage themselves)."""
    from amqp.exceptions import AccessRefused, NotAllowed
    from kombu import Connection

    parts = urlsplit(broker_url.split(";")[0])
    vhost = unquote(parts.path[1:]) or "/"
    try:
        with Connection(broker_url, connect_timeout=5) as connection:
            connection.connect()
    except (NotAllowed, AccessRefused):
        user = unquote(parts.username or "guest")
        return (
            f"The tests use their own RabbitMQ vhost, {vhost!r}, and the broker at "
            f"{parts.hostname}:{parts.port or 5672} has none that {user!r} may use. Create it:\n"
            f"  rabbitmqctl add_vhost {vhost}\n"
            f"  rabbitmqctl set_permissions -p {vhost} {user} '.*' '.*' '.*'\n"
            "(with docker compose: docker compose exec rabbitmq rabbitmqctl …), "
            "or name another vhost in TRACELEDGER_TEST_VHOST."
        )
    except Exception:
        return None
    return None


def isolate_environment() -> None:
    """Points ``CELERY_BROKER_URL`` and ``REDIS_URL`` at the tests' vhost and database.

    Once per test run: the processes the tests start inherit the result, and a test that
    hands one a URL of its own (a bad one, say) keeps it."""
    if os.environ.get("TRACELEDGER_TEST_ISOLATED"):
        return
    os.environ["CELERY_BROKER_URL"] = broker_url_with_vhost(
        os.environ.get("CELERY_BROKER_URL") or DEFAULT_BROKER_URL,
        os.environ.get("TRACELEDGER_TEST_VHOST") or "traceledger_test",
    )
    os.environ["REDIS_URL"] = redis_url_with_db(
        os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL, _test_redis_db()
    )
    os.environ["TRACELEDGER_TEST_ISOLATED"] = "1"
