"""A request id on every log line of a request, echoed back in ``X-Request-ID``, and on the
worker's log lines of the task that carries it (the ingest message's ``request_id``, the
index task's ``request_ids``: a task for several requests lists them in ``request_ids``)."""

import contextvars
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from celery import signals
from django.core.signals import request_finished

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
# A task that works for several requests at once (an index task over a coalesced ingest
# transaction): their ids, on each of its log lines as ``request_ids``, with no request_id.
request_ids_var: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "request_ids", default=()
)

# Accept a caller's id only when it is short and plain, so it cannot forge log structure.
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def current_request_id() -> str:
    return request_id_var.get()


def request_id_for(meta) -> str:
    """The client's ``X-Request-ID`` when it is 1-128 of ``A-Za-z0-9._:-``, else a new one."""
    incoming = meta.get("HTTP_X_REQUEST_ID", "")
    return incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex


class RequestIdMiddleware:
    header = "HTTP_X_REQUEST_ID"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_for(request.META)
        request.request_id = request_id
        # Not reset when this returns: Django logs the request's own warnings ("Not Found:",
        # "Forbidden:", server errors) after the middleware chain, and a streamed export logs
        # while it is sent. It is forgotten once the response is closed (request_finished).
        request_id_var.set(request_id)
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


def _forget_request_id(**kwargs) -> None:
    request_id_var.set("")


request_finished.connect(_forget_request_id, dispatch_uid="traceledger.request_id.forget")


def _plain(value: object) -> str:
    """``value`` when it could be a request id of ours, else "" (a replayed or foreign
    message may carry anything)."""
    return value if isinstance(value, str) and _VALID_ID.match(value) else ""


@contextmanager
def bound_request_id(value: object) -> Iterator[None]:
    """Log lines inside the block carry ``value`` as their request id."""
    token = request_id_var.set(_plain(value))
    try:
        yield
    finally:
        request_id_var.reset(token)


@signals.task_prerun.connect(dispatch_uid="traceledger.request_id.task_bind")
def _bind_task_request_id(kwargs=None, **_) -> None:
    # Celery logs a task's outcome ("succeeded", "Retry in", a failure) before task_postrun.
    # A task for one request carries ``request_id`` (ingest) or a ``request_ids`` of one
    # (indexing); a task for several logs their ids as ``request_ids`` and no request_id:
    # naming one of them would send whoever follows the others' ids to the wrong request.
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    several = kwargs.get("request_ids")
    several = tuple(filter(None, map(_plain, several))) if isinstance(several, list) else ()
    single = _plain(kwargs.get("request_id")) or (several[0] if len(several) == 1 else "")
    request_id_var.set(single)
    request_ids_var.set(several if len(several) > 1 else ())


@signals.task_postrun.connect(dispatch_uid="traceledger.request_id.task_forget")
def _forget_task_request_id(**_) -> None:
    request_id_var.set("")
    request_ids_var.set(())


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get() or None
        several = request_ids_var.get()
        if several and not hasattr(record, "request_ids"):
            record.request_ids = list(several)
        return True
