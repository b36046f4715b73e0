"""Request bodies the API reads: JSON as sent, never compressed.

A body sent with ``Content-Encoding: gzip`` (or br, deflate, ...) was read as if it were
plain: gzip's bytes were a confusing 400 "JSON is malformed: invalid character (byte 0)",
and a plain body that only claimed gzip was accepted. Neither Django nor DRF decodes a
request's content coding, and decompressing here would let a small body expand past
``TRACELEDGER_MAX_BODY_BYTES``, so such a body is a 415 naming the header (RFC 9110
§15.5.16, with ``Accept-Encoding: identity`` in the answer, set by the exception handler).
"""

import sys

from django.utils.http import parse_header_parameters
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _has_body(meta) -> bool:
    try:
        length = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return length > 0 or bool(meta.get("HTTP_TRANSFER_ENCODING"))


def content_encoding_refuse(meta) -> None:
    """``UnsupportedContentEncoding`` (415) when a request with a body names a content
    coding other than ``identity``, or a transfer coding other than ``chunked``; the
    request's ``META`` is all it reads."""
    # Imported here: DRF imports this module from its settings (DEFAULT_PARSER_CLASSES) while
    # traceledger.api.exceptions, which imports DRF, may still be loading.
    from traceledger.api.exceptions import UnsupportedContentEncoding

    header = meta.get("HTTP_CONTENT_ENCODING", "")
    codings = {coding.strip().lower() for coding in header.split(",")} - {"", "identity"}
    if codings and _has_body(meta):
        raise UnsupportedContentEncoding(header)
    # A transfer coding compresses the body too: gunicorn removes `chunked` and leaves any
    # other, so `Transfer-Encoding: gzip, chunked` came through as gzip's bytes (a 400 on
    # byte 0x8b), and a plain body labelled so was accepted.
    transfer = meta.get("HTTP_TRANSFER_ENCODING", "")
    if {coding.strip().lower() for coding in transfer.split(",")} - {"", "identity", "chunked"}:
        raise UnsupportedContentEncoding(transfer, header="Transfer-Encoding")


# No body these endpoints take nests deeper than a few levels (ingest, whose metadata may
# nest 32 deep, reads its body itself). Deeper ones are refused before any code walks them
# recursively: a few KB of brackets reach Python's recursion limit (a 500 before this).
MAX_DEPTH = 32
_TOO_DEEP = "Malformed JSON: nested too deeply."


def charset_refuse(meta) -> None:
    """415 when ``Content-Type`` names a charset other than UTF-8.

    JSON exchanged between systems is UTF-8 (RFC 8259 §8.1), and ingest reads it so: a body
    labelled ``charset=iso-8859-1`` was decoded as UTF-8 there (the client's "Ã©" stored as
    "é") and as Latin-1 by DRF's parser on the other endpoints. Refused, never guessed."""
    from traceledger.api.exceptions import UnsupportedCharset

    _media_type, params = parse_header_parameters(meta.get("CONTENT_TYPE", ""))
    charset = params.get("charset")
    if charset is not None and charset.strip().lower() not in ("utf-8", "utf8"):
        raise UnsupportedCharset(charset)


class UncompressedJSONParser(JSONParser):
    """DRF's JSON parser, refusing a compressed body (``content_encoding_refuse``) and any
    charset but UTF-8 (``charset_refuse``)."""

    def parse(self, stream, media_type=None, parser_context=None):
        content_encoding_refuse(parser_context["request"].META)
        charset_refuse(parser_context["request"].META)
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(_TOO_DEEP) from None
        except ParseError as exc:
            # DRF wraps json's ValueError as "JSON parse error - Exceeds the limit (4300
            # digits) for integer string conversion ... use sys.set_int_max_str_digits()":
            # advice for the server's code, not the client. Said as ingest says it.
            if _too_many_digits(exc.__context__):
                raise ParseError(
                    f"Malformed JSON: a number has more than {sys.get_int_max_str_digits():,} "
                    "digits."
                ) from None
            raise
        _refuse_unusable(data)
        return data


def _too_many_digits(exc: BaseException | None) -> bool:
    """Whether ``exc`` is int()'s refusal of a string past ``sys.get_int_max_str_digits()``
    (a plain ValueError, told apart only by CPython's message)."""
    return isinstance(exc, ValueError) and "for integer string conversion" in str(exc)


def _refuse_unusable(data) -> None:
    """Refuses nesting deeper than ``MAX_DEPTH`` and lone surrogates.

    Python's ``json`` accepts an unpaired ``\\ud800`` escape, a string no UTF-8 can hold:
    echoed back in an error (an unknown field's name, a bad choice) or used as a rate-limit
    key (the login's username), it made the answer a 500. A 400, as ingest answers it."""
    stack = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise ParseError(_TOO_DEEP)
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ParseError(
                    "Malformed JSON: invalid string: unpaired UTF-16 surrogate; a string "
                    "must hold Unicode characters only."
                ) from None
