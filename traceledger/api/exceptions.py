"""One error shape for the whole API: ``{"error": {"code", "message", "fields"}}``.

``fields`` maps each bad field to its messages; for a list body it maps the item index to
that item's field errors, e.g. ``{"2": {"occurred_at": ["..."]}}``.
"""

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_exception_handler

from traceledger.errors import DependencyUnavailable, Overloaded

logger = logging.getLogger(__name__)


# PostgreSQL answered, but a lock was not granted (lock_timeout) or the statement ran out of
# time (statement_timeout): another action holds the rows, the database is not "unreachable".
BUSY_SQLSTATES = frozenset({"55P03", "57014"})
BUSY_MESSAGE = "The database is busy (another action holds what this one needs); retry later."


def database_busy(exc: BaseException) -> bool:
    """Whether a database error is a lock or statement timeout (Django keeps psycopg's error,
    which carries the SQLSTATE, as the cause)."""
    return getattr(exc.__cause__, "sqlstate", None) in BUSY_SQLSTATES


def error_body(code: str, message: str, fields=None) -> dict:
    body = {"error": {"code": code, "message": message}}
    if fields:
        body["error"]["fields"] = fields
    return body


def _flatten_fields(detail):
    """DRF ErrorDetail trees → plain JSON (lists of strings, dicts keyed by field/index)."""
    if isinstance(detail, dict):
        return {str(k): _flatten_fields(v) for k, v in detail.items()}
    if isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            return [str(item) for item in detail]
        return {
            str(i): _flatten_fields(item) for i, item in enumerate(detail) if item not in ({}, [])
        }
    return [str(detail)]


class _Unavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "unavailable"

    def __init__(self, detail: str, *, wait: int):
        super().__init__(detail)
        self.wait = wait  # DRF's handler turns this into Retry-After


class _Overloaded(exceptions.Throttled):
    default_code = "overloaded"

    def __init__(self, detail: str, *, wait: int):
        super().__init__(wait=wait)
        self.detail = exceptions.ErrorDetail(detail, code=self.default_code)


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"
    default_detail = "The request body is too large."


def _mib(size: int) -> str:
    """``size`` in MiB, to two decimals (two significant digits below 0.01)."""
    mib = size / 2**20
    text = f"{mib:.2f}".rstrip("0").rstrip(".") if mib >= 0.01 else f"{mib:.2g}"
    return text if float(text) == mib else f"about {text}"


def payload_too_large() -> PayloadTooLarge:
    """The 413, naming the limit (``TRACELEDGER_MAX_BODY_BYTES``) a client must stay under."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is None:  # no limit: Django never raises RequestDataTooBig then
        return PayloadTooLarge()
    return PayloadTooLarge(
        f"The request body is too large: the limit is {limit:,} bytes ({_mib(limit)} MiB)."
    )


class UnsupportedContentEncoding(exceptions.UnsupportedMediaType):
    """A request body sent compressed (``traceledger.api.parsers``)."""

    def __init__(self, content_encoding: str, header: str = "Content-Encoding"):
        shown = content_encoding.strip()[:64]
        allowed = (
            "(or with `Content-Encoding: identity`)"
            if header == "Content-Encoding"
            else "(`Transfer-Encoding: chunked` alone is fine)"
        )
        super().__init__(
            shown,
            detail=f"Unsupported {header} {shown!r}: send the request body uncompressed, "
            f"without a `{header}` header {allowed}.",
        )


class UnsupportedCharset(exceptions.UnsupportedMediaType):
    """A JSON body labelled with a charset other than UTF-8 (``traceledger.api.parsers``)."""

    def __init__(self, charset: str):
        shown = charset.strip()[:64]
        super().__init__(
            shown,
            detail=f"Unsupported charset {shown!r}: JSON request bodies are UTF-8; send "
            "`Content-Type: application/json` (or `application/json; charset=utf-8`).",
        )


# Seconds a client waits before retrying a read while PostgreSQL is unreachable.
DATABASE_RETRY_AFTER = 5


def _challenge(request) -> str | None:
    """The ``WWW-Authenticate`` of the authenticator whose scheme the request used, if any.

    DRF answers every 401 with the first authenticator's challenge (``Api-Key``), which
    would tell a client whose Bearer token failed to switch schemes. Schemes compare
    case-insensitively (RFC 9110 §11.1).
    """
    scheme = request.META.get("HTTP_AUTHORIZATION", "").split(" ", 1)[0].lower()
    if not scheme:
        return None
    for authenticator in getattr(request, "authenticators", ()):
        header = authenticator.authenticate_header(request)
        if header and header.split(" ", 1)[0].lower() == scheme:
            return header
    return None


def _authorization(context) -> str:
    request = context.get("request")
    return request.META.get("HTTP_AUTHORIZATION", "").strip() if request is not None else ""


def exception_handler(exc, context):
    if isinstance(exc, DependencyUnavailable):
        if exc.public_message:
            logger.warning("answering 503: %s", exc)
        exc = _Unavailable(exc.public_message or str(exc), wait=exc.retry_after)
    elif isinstance(exc, OperationalError | InterfaceError):
        # PostgreSQL unreachable, or a lock or statement timeout: a dependency is down or
        # busy, not a bug. (A DataError or IntegrityError still answers 500: that is one.)
        logger.warning("database unavailable, answering 503: %s", type(exc).__name__)
        message = (
            BUSY_MESSAGE if database_busy(exc) else "The database is unavailable; retry later."
        )
        exc = _Unavailable(message, wait=DATABASE_RETRY_AFTER)
    elif isinstance(exc, Overloaded):
        exc = _Overloaded(str(exc), wait=exc.retry_after)
    elif isinstance(exc, RequestDataTooBig):
        # Any DRF view that parses a body over DATA_UPLOAD_MAX_MEMORY_SIZE; Django's own
        # handling of it is an HTML 400.
        exc = payload_too_large()
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        # Keep the reason our selectors give ("You may only use your own tenant's events.");
        # Django's bare PermissionDenied() has none and gets DRF's default.
        exc = exceptions.PermissionDenied(str(exc) or None)
    if getattr(exc, "auth_header", None) and "request" in context:
        exc.auth_header = _challenge(context["request"]) or exc.auth_header
    if isinstance(exc, exceptions.NotAuthenticated) and _authorization(context):
        # A header was sent, in a scheme no authenticator takes (often the bare key, as a
        # tool reading "apiKey in header Authorization" sends it): "not provided" misled.
        exc = exceptions.NotAuthenticated(
            "The Authorization header is not in a scheme this API takes: send "
            "`Authorization: Api-Key <key>` or `Authorization: Bearer <access token>`."
        )
        exc.auth_header = _challenge(context["request"]) or "Api-Key"

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # unexpected: let Django log it and answer 500

    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten_fields(exc.detail)
        if isinstance(exc.detail, list) and not isinstance(fields, dict):
            body = error_body("invalid", " ".join(fields))
        else:
            body = error_body("invalid", "The request has invalid fields.", fields)
    else:
        code = getattr(exc, "default_code", "error")
        detail = getattr(exc, "detail", str(exc))
        if isinstance(detail, dict):
            # simplejwt's exceptions carry {"detail", "code", "messages"}: the dict's code is
            # the specific one (session_expired, password_changed, token_not_valid).
            body = error_body(str(detail.get("code", code)), str(detail.get("detail", "")))
        else:
            body = error_body(str(getattr(detail, "code", None) or code), str(detail))
    response.data = body
    if isinstance(exc, UnsupportedContentEncoding):
        # RFC 9110 §15.5.16: the content codings that would have been accepted.
        response["Accept-Encoding"] = "identity"
    return response
