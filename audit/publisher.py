"""Publish ingest batches to RabbitMQ with publisher confirms, never blocking a request long.

Why a thread: kombu can hang for tens of seconds inside channel close when RabbitMQ blocks
publishers (notes §0.5, §2.2). So the AMQP work happens in one long-lived daemon thread per
process that owns the connection; a request hands it a message and waits on a future for at
most ``TRACELEDGER_PUBLISH_TIMEOUT``. Whatever the thread is stuck on, the request moves on
(to the outbox) in time.

Why batches: a confirm round trip per message caps a process at ~1k msg/s (issue 9). The
thread publishes every message waiting in its queue, then waits once for their confirms
(RabbitMQ acks with ``multiple=True``), so concurrent requests share round trips.

A message whose request already gave up is cancelled and never published; one the thread
had already sent and that is confirmed late is a duplicate the worker drops (same ids).

Messages follow Celery's task message protocol 2 (JSON), so ``audit.ingest_batch`` runs on a
normal Celery worker: we build them here instead of calling ``apply_async`` because Celery's
producer pool is exactly the part that hangs, and ``apply_async`` costs ~1.1 ms of CPU per
call (issue 9).
"""

import contextlib
import logging
import os
import queue
import socket
import threading
import time
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import amqp
import orjson
import pybreaker
from django.conf import settings
from kombu import Connection

from audit import metrics
from audit.topology import broker_connection, topology_declare
from audit.validation import new_id
from traceledger.queues import AUDIT_EXCHANGE, INGEST_QUEUE_NAME, INGEST_TASK_NAME
from traceledger.request_id import bound_request_id

logger = logging.getLogger(__name__)

INGEST_ROUTING_KEY = INGEST_QUEUE_NAME
# The most messages the thread sends before it waits for their confirms.
MAX_MESSAGES_PER_CONFIRM = 500
HOSTNAME = socket.gethostname()  # once, not per message
# A publisher busy on one step for this long is presumed wedged (e.g. a blocked connection's
# close) and its socket is cut from outside, which unblocks any read or write.
WEDGED_AFTER_SECONDS = 10.0
BREAKER_FAIL_MAX = 3
BREAKER_RESET_TIMEOUT = 15
# A backlog reading older than this (the thread is stuck, or the broker went away) is not
# acted on: admission control must never refuse on stale news.
BACKLOG_STALE_SECONDS = 5.0
MIN_IDLE_PROBE_SECONDS = 0.05


class PublishError(Exception):
    """The broker did not confirm the message in time (or refused it)."""


class BrokerSkipped(PublishError):
    """The circuit breaker is open: the broker was not even tried."""


class MessageNacked(PublishError):
    pass


class PublishInFlight(PublishError):
    """The request's wait ran out while the publisher thread was already sending the message:
    RabbitMQ may still confirm it. ``confirmed_within`` waits for that outcome."""

    def __init__(self, message: str, *, future: Future):
        super().__init__(message)
        self.future = future

    def confirmed_within(self, seconds: float) -> bool:
        try:
            return self.future.result(timeout=seconds) is True
        except (FutureTimeout, CancelledError, PublishError):
            return False


class BreakerStateLog(pybreaker.CircuitBreakerListener):
    """Logs the breaker's state changes, never its per-request outcomes: one WARNING when it
    opens after working, one INFO when it closes again, with how long it was open. The
    re-openings in between (each failed trial, every ``reset_timeout`` seconds while the
    broker stays down) and the half-open steps are DEBUG."""

    def __init__(self) -> None:
        self.opened_at: float | None = None  # monotonic time of the open that began the outage

    def state_change(self, cb, old_state, new_state) -> None:
        old = old_state.name if old_state is not None else None
        new = new_state.name
        if new == pybreaker.STATE_OPEN and old == pybreaker.STATE_CLOSED:
            self.opened_at = time.monotonic()
            logger.warning(
                "RabbitMQ circuit breaker opened after %s failed publishes in a row: this "
                "process puts ingest batches in the outbox without trying the broker, and "
                "retries it every %s s (the outbox relay tries it on every run)",
                cb.fail_max,
                cb.reset_timeout,
                extra={"breaker": cb.name},
            )
        elif new == pybreaker.STATE_CLOSED and old not in (None, pybreaker.STATE_CLOSED):
            opened_at, self.opened_at = self.opened_at, None
            open_seconds = round(time.monotonic() - opened_at, 1) if opened_at else None
            logger.info(
                "RabbitMQ circuit breaker closed: publishing to the broker again",
                extra={"breaker": cb.name, "open_seconds": open_seconds},
            )
        elif new != old:
            logger.debug("RabbitMQ circuit breaker %s -> %s", old, new, extra={"breaker": cb.name})


# In-process state is enough for a handful of processes (notes §6); each process learns on
# its own within BREAKER_FAIL_MAX requests. Only its state is used through pybreaker: the
# publish itself happens outside ``breaker.call`` because pybreaker holds its lock for the
# whole call, which would serialise every request of a threaded server behind one publish.
broker_breaker = pybreaker.CircuitBreaker(
    fail_max=BREAKER_FAIL_MAX,
    reset_timeout=BREAKER_RESET_TIMEOUT,
    name="rabbitmq-publish",
    exclude=[BrokerSkipped],
    listeners=[BreakerStateLog()],
)


def breaker_is_open() -> bool:
    """Open and still inside its reset timeout: requests skip the broker."""
    if broker_breaker.current_state != pybreaker.STATE_OPEN:
        return False
    opened_at = broker_breaker._state_storage.opened_at
    return bool(opened_at) and datetime.now(UTC) < opened_at + timedelta(
        seconds=broker_breaker.reset_timeout
    )


def _raise(exc: BaseException | None) -> None:
    if exc is not None:
        raise exc


def _breaker_record(exc: BaseException | None) -> None:
    """Feed one outcome to the breaker (moves open → half-open → closed/open as usual)."""
    try:
        broker_breaker.call(_raise, exc)
    except pybreaker.CircuitBreakerError:
        pass
    except PublishError:
        pass


@dataclass
class OutgoingMessage:
    body: bytes
    headers: dict
    task_id: str
    future: Future = field(default_factory=Future)
    # The sending request's id, for the publisher thread's log lines (it has no request).
    request_id: str | None = None
    # How long its sender waits for the confirm: the thread waits at least as long (the
    # outbox relay's large batches wait 10 s; a request 1 s, the thread then 3 s).
    wait: float = 0.0


def kwargs_repr(kwargs: dict) -> str:
    """What workers log of an ingest message's arguments (its ``kwargsrepr`` header): never
    the events themselves, which hold people's names, addresses and whatever else a service
    put in them; workers log this header and the management UI shows it."""
    events = kwargs.get("events")
    count = len(events) if isinstance(events, list) else "?"
    return f"{{'tenant_id': {kwargs.get('tenant_id')!r}, 'events': <{count} events>}}"


def task_message(*, task_name: str, kwargs: dict) -> OutgoingMessage:
    """A Celery protocol 2 message for ``task_name(**kwargs)``, body serialised with orjson."""
    task_id = new_id()  # batched urandom, as for event ids: no syscall per request
    headers = {
        "lang": "py",
        "task": task_name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": "()",
        "kwargsrepr": kwargs_repr(kwargs),
        "origin": f"traceledger-web@{HOSTNAME}:{os.getpid()}",
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    body = orjson.dumps(
        [[], kwargs, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    )
    return OutgoingMessage(
        body=body, headers=headers, task_id=task_id, request_id=kwargs.get("request_id")
    )


class Publisher:
    """One AMQP connection and one confirm-mode channel, driven by one daemon thread."""

    def __init__(self, *, broker_url: str, confirm_timeout: float):
        self.broker_url = broker_url
        self.confirm_timeout = confirm_timeout
        self.pid = os.getpid()
        self._queue: queue.SimpleQueue[OutgoingMessage | None] = queue.SimpleQueue()
        self._conn: Connection | None = None
        self._channel = None
        self._next_tag = 0
        self._pending: dict[int, OutgoingMessage] = {}
        self._stopped = False
        # Monotonic time the thread started its current step, or None while idle.
        self.busy_since: float | None = None
        # The confirm wait of the batch being published (``_publish_confirmed``).
        self._confirm_limit = confirm_timeout
        # (messages ready in audit.ingest, monotonic time read): see ``ingest_backlog``.
        self._backlog: tuple[int, float] | None = None
        self._thread = threading.Thread(target=self._run, name="traceledger-publisher", daemon=True)
        self._thread.start()

    # -- request side ----------------------------------------------------------------------
    def submit(self, message: OutgoingMessage) -> Future:
        self._queue.put(message)
        return message.future

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def ingest_backlog(self) -> int | None:
        """Messages waiting in ``audit.ingest`` as last read by the thread, or None when
        unknown or stale (not connected, no reading for ``BACKLOG_STALE_SECONDS``)."""
        reading = self._backlog
        if reading is None or time.monotonic() - reading[1] > BACKLOG_STALE_SECONDS:
            return None
        return reading[0]

    def is_wedged(self) -> bool:
        since = self.busy_since
        limit = max(WEDGED_AFTER_SECONDS, self._confirm_limit + 1.0)
        return since is not None and time.monotonic() - since > limit

    def abort(self) -> None:
        """Cut the socket under the thread: whatever it waits on fails at once."""
        amqp_conn = getattr(self._conn, "_connection", None)
        sock = getattr(getattr(amqp_conn, "transport", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stopped = True
        self._queue.put(None)
        self.abort()

    # -- publisher thread ------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopped:
            try:
                first = self._queue.get(timeout=self._idle_timeout())
            except queue.Empty:
                self._probe_backlog()
                continue
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_MESSAGES_PER_CONFIRM:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._stopped = True
                    break
                batch.append(item)
            # A request that already timed out has cancelled its future: skip it, so the
            # outbox copy is the only copy.
            batch = [m for m in batch if m.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            self.busy_since = time.monotonic()
            try:
                self._publish_confirmed(batch)
            except Exception as exc:
                # The thread serves many requests: name them, so that an operator can tell
                # which requests' events went to the outbox (the line of a one-message batch
                # carries its request id like any line of that request).
                request_ids = [m.request_id for m in batch if m.request_id]
                with bound_request_id(request_ids[0] if len(batch) == 1 and request_ids else ""):
                    logger.warning(
                        "publish to RabbitMQ failed",
                        extra={"error": repr(exc), "request_ids": request_ids[:100]},
                    )
                self._drop_connection()
                failure = exc if isinstance(exc, PublishError) else PublishError(repr(exc))
                for message in batch:
                    if not message.future.done():
                        message.future.set_exception(failure)
            else:
                self._probe_backlog(only_if_older_than=settings.TRACELEDGER_INGEST_BACKLOG_PROBE)
            finally:
                self.busy_since = None
        self._drop_connection()

    def _idle_timeout(self) -> float | None:
        """While requests are refused for the backlog nothing is published, so nothing
        would refresh the reading that refuses them: the idle thread re-reads it. Otherwise
        it sleeps until the next message (no broker traffic from an idle web process)."""
        limit = settings.TRACELEDGER_INGEST_MAX_BACKLOG
        reading = self._backlog
        if limit and reading is not None and reading[0] >= limit:
            return max(settings.TRACELEDGER_INGEST_BACKLOG_PROBE, MIN_IDLE_PROBE_SECONDS)
        return None

    def _probe_backlog(self, *, only_if_older_than: float = 0.0) -> None:
        """Read the depth of ``audit.ingest`` (a passive declare, one round trip) on the
        publishing channel; never connects just for this."""
        if not settings.TRACELEDGER_INGEST_MAX_BACKLOG or self._channel is None:
            self._backlog = None
            return
        reading = self._backlog
        if reading is not None and time.monotonic() - reading[1] < only_if_older_than:
            return
        self.busy_since = time.monotonic()
        try:
            declared = self._channel.queue_declare(queue=INGEST_QUEUE_NAME, passive=True)
        except Exception as exc:
            logger.warning("reading the ingest backlog failed", extra={"error": repr(exc)})
            self._drop_connection()
            self._backlog = None
        else:
            self._backlog = (declared.message_count, time.monotonic())
        finally:
            self.busy_since = None

    def _connect(self) -> None:
        timeout = max(self.confirm_timeout, 0.1)
        # The request never waits on the socket bounds; they only unstick the thread.
        conn = broker_connection(
            self.broker_url,
            name=f"traceledger-web-{os.getpid()}",
            connect_timeout=timeout,
            io_timeout=max(timeout * 2, 2.0),
        )
        self._conn = conn
        # One attempt: a retry loop here would only delay the next batch's own attempt.
        conn.ensure_connection(max_retries=0, timeout=timeout)
        channel = conn.channel()
        topology_declare(channel)
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        channel.events["basic_return"].add(self._on_return)
        self._channel = channel
        self._next_tag = 0
        self._pending = {}

    def _drop_connection(self) -> None:
        """Forget the connection without any network round trip (no close handshake: that
        is the call that hangs on a blocked connection)."""
        conn, self._conn, self._channel = self._conn, None, None
        self._pending = {}
        if conn is not None:
            # The socket may already be gone; there is nothing left to free then.
            with contextlib.suppress(Exception):
                conn.collect()

    def _publish_confirmed(self, batch: list[OutgoingMessage]) -> None:
        if self._channel is None:
            self._connect()
        started = time.monotonic()
        for message in batch:
            self._next_tag += 1
            self._pending[self._next_tag] = message
            self._channel.basic_publish(
                amqp.Message(
                    message.body,
                    content_type="application/json",
                    content_encoding="utf-8",
                    delivery_mode=2,
                    correlation_id=message.task_id,
                    reply_to="",
                    application_headers=message.headers,
                ),
                exchange=AUDIT_EXCHANGE.name,
                routing_key=INGEST_ROUTING_KEY,
                # RabbitMQ confirms an unroutable message too (notes §2.1): mandatory makes
                # it come back first, so a missing queue or binding is a failure, not a loss.
                mandatory=True,
            )
        # At least as long as any sender waits: RELAY_PUBLISH_TIMEOUT (10 s) had no effect
        # when the thread gave up after its own 3 s (code review).
        limit = self._confirm_limit = max(self.confirm_timeout, *(m.wait for m in batch))
        deadline = started + limit
        while self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # Named for what it is: operators read "within 3.0s" as contradicting the
                # documented 1 s, which is the request's wait, long over by now.
                raise PublishError(
                    f"no confirm from RabbitMQ within {limit:g} s, the "
                    "publisher thread's own wait for late confirms (a request waits "
                    f"TRACELEDGER_PUBLISH_TIMEOUT, {settings.TRACELEDGER_PUBLISH_TIMEOUT:g} s, "
                    "then puts its batch in the outbox)"
                )
            try:
                self._conn.connection.drain_events(timeout=remaining)
            except TimeoutError:
                continue
        metrics.PUBLISH_SECONDS.observe(time.monotonic() - started)

    def _resolve(self, delivery_tag: int, multiple: bool, exc: BaseException | None) -> None:
        tags = [t for t in self._pending if t <= delivery_tag] if multiple else [delivery_tag]
        for tag in tags:
            message = self._pending.pop(tag, None)
            if message is None or message.future.done():
                continue
            if exc is None:
                message.future.set_result(True)
            else:
                message.future.set_exception(exc)

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._resolve(delivery_tag, multiple, None)

    def _on_return(self, exc, exchange, routing_key, message) -> None:
        """basic.return arrives before the message's ack: fail it now, the ack then finds it
        already done."""
        task_id = message.properties.get("correlation_id")
        for tag, pending in list(self._pending.items()):
            if pending.task_id == task_id:
                del self._pending[tag]
                # The batch still goes to the outbox; the line says why (a queue or binding
                # missing), which the breaker's "failed publishes" line does not.
                with bound_request_id(pending.request_id or ""):
                    logger.warning(
                        "publish to RabbitMQ failed",
                        extra={"error": f"unroutable: {exc}", "request_ids": [pending.request_id]},
                    )
                if not pending.future.done():
                    pending.future.set_exception(
                        PublishError(f"RabbitMQ could not route the message: {exc}")
                    )

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._resolve(delivery_tag, multiple, MessageNacked("RabbitMQ refused the message"))


_publisher: Publisher | None = None
_publisher_lock = threading.Lock()


def late_confirm_seconds() -> float:
    """How long the publisher thread waits for confirms: longer than a request waits, so a
    slow confirm still lands (the request has moved on to the outbox; the duplicate is
    dropped by the worker)."""
    return max(3 * settings.TRACELEDGER_PUBLISH_TIMEOUT, 3.0)


def _needs_new_publisher(publisher: Publisher | None, url: str) -> bool:
    return (
        publisher is None
        or publisher.pid != os.getpid()
        or publisher.broker_url != url
        # A thread that died of a bug would otherwise send every request to the outbox.
        or not publisher.is_alive()
    )


def get_publisher() -> Publisher:
    """This process's publisher; a new one after fork (threads do not survive fork) or when
    the broker URL changed (tests point it at a fault proxy)."""
    global _publisher
    publisher = _publisher
    url = settings.CELERY_BROKER_URL
    if _needs_new_publisher(publisher, url):
        with _publisher_lock:
            publisher = _publisher
            if _needs_new_publisher(publisher, url):
                if publisher is not None and publisher.pid == os.getpid():
                    publisher.stop()
                publisher = Publisher(broker_url=url, confirm_timeout=late_confirm_seconds())
                _publisher = publisher
    return publisher


def publisher_reset() -> None:
    """Stop this process's publisher and close the breaker (tests, and after a fork)."""
    global _publisher
    with _publisher_lock:
        if _publisher is not None and _publisher.pid == os.getpid():
            _publisher.stop()
        _publisher = None
    broker_breaker.close()


def ingest_backlog() -> int | None:
    """Messages waiting in ``audit.ingest`` as this process last read them (None: unknown,
    e.g. before its first publish, while the breaker is open, or when the reading is stale)."""
    if breaker_is_open():
        return None
    return get_publisher().ingest_backlog()


def publish_tasks(
    *, task_name: str, kwargs_list: list[dict], timeout: float | None = None, force: bool = False
) -> list[BaseException | None]:
    """Publish one ``task_name`` message per kwargs and wait, at most ``timeout`` seconds in
    all (default ``TRACELEDGER_PUBLISH_TIMEOUT``), for RabbitMQ's confirms. Returns, per
    message, None when confirmed or the ``PublishError`` that prevented it.

    While the breaker is open every message fails with ``BrokerSkipped`` at once, unless
    ``force`` (the outbox relay, which is the probe that the broker is back: its success
    closes the breaker, its failures do not count toward opening it).
    """
    if not force and breaker_is_open():
        return [BrokerSkipped("RabbitMQ circuit breaker is open") for _ in kwargs_list]
    if timeout is None:
        timeout = settings.TRACELEDGER_PUBLISH_TIMEOUT
    publisher = get_publisher()
    if publisher.is_wedged():
        publisher.abort()
    messages = [task_message(task_name=task_name, kwargs=kw) for kw in kwargs_list]
    for message in messages:
        message.wait = timeout
    futures = [publisher.submit(m) for m in messages]
    deadline = time.monotonic() + timeout
    outcomes: list[BaseException | None] = []
    for future in futures:
        try:
            future.result(timeout=max(deadline - time.monotonic(), 0))
        except FutureTimeout:
            unconfirmed = f"RabbitMQ did not confirm within {timeout}s"
            if future.cancel():
                outcomes.append(PublishError(unconfirmed))
            else:
                # Already sent: a confirm may still come (the caller may wait for it).
                outcomes.append(PublishInFlight(unconfirmed, future=future))
        except CancelledError:
            outcomes.append(PublishError("publish cancelled"))
        except PublishError as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)
    if not force:
        for outcome in outcomes:
            _breaker_record(outcome)
    elif (
        all(outcome is None for outcome in outcomes)
        and broker_breaker.current_state != pybreaker.STATE_CLOSED
    ):
        # A forced publish (the relay) that went through is proof the broker is back; the
        # breaker would otherwise refuse to count it until its reset timeout.
        broker_breaker.close()
    # A forced publish that failed is not fed to the breaker: the breaker spares requests
    # the publish timeout, and the relay runs where no request is served (beat's worker,
    # manage.py relay_outbox). There one dead connection failed a whole chunk (50 batches,
    # "50 failures in a row") and opened it, logging that requests skip the broker. A process
    # that does serve requests learns of the outage from BREAKER_FAIL_MAX of its own.
    return outcomes


def publish_ingest_batch(
    kwargs: dict, *, timeout: float | None = None, force: bool = False
) -> None:
    """Publish one ``audit.ingest_batch`` message (the contract with the ingest worker) and
    wait for its confirm. Raises ``BrokerSkipped`` while the breaker is open (unless
    ``force``, as for ``publish_tasks``) and ``PublishError`` when RabbitMQ did not confirm
    in time; the caller then keeps the message elsewhere (the outbox)."""
    (outcome,) = publish_tasks(
        task_name=INGEST_TASK_NAME, kwargs_list=[kwargs], timeout=timeout, force=force
    )
    if outcome is not None:
        raise outcome
