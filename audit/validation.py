"""The audit event of ARCHITECTURE §4: compiled validation and normalisation with msgspec.

Two paths, one set of types:

- fast: the body is decoded straight into ``EventIn`` structs (constraints checked in C),
  then a few checks msgspec cannot express run in Python (the 5-minute future bound, the
  metadata rules, IP normalisation). This is the path of every valid request.
- detailed: only when the fast path fails, each item is checked field by field with the same
  types, so the 400 names *every* bad field of *every* bad item, as DRF would.

The output is the flat event dict of the contract with the ingest worker (every key present,
defaults applied), already in the form the ledger hashes: ``occurred_at`` in UTC with exactly
six fractional digits (extra digits truncated), ``source_ip`` compressed.
"""

import hashlib
import ipaddress
import json
import math
import os
import re
import struct
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, get_args, get_origin

import msgspec
import orjson
from msgspec import Meta

from audit.ledger.canonical import FIRST_NON_BMP, ipv4_is_canonical

MAX_EVENTS_PER_REQUEST = 1000
MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 32
MAX_FUTURE = timedelta(minutes=5)
_NUL_MESSAGE = "Must not contain the NUL character (\\u0000)."
# RFC 8785 canonical JSON (the ledger hash) represents numbers as IEEE doubles: an integer
# beyond ±(2^53-1) would be hashed as a different number than the one stored. A float beyond
# it is refused too: PostgreSQL's jsonb keeps it as a numeric that comes back as a huge
# integer (1e21 → 1000000000000000000000), which a client could then not post again.
MAX_SAFE_INTEGER = 2**53 - 1
_RANGE_MESSAGE = "Numbers must be within ±(2^53-1)."

ACTION_PATTERN = r"\A[A-Za-z0-9_.:-]{1,128}\Z"
Action = Annotated[str, Meta(pattern=ACTION_PATTERN)]
# A timestamp is kept as text until it is parsed: sub-microsecond digits are truncated
# first (the parser would round them), so the stored instant is a prefix of the sent one.
Timestamp = Annotated[str, Meta(max_length=64)]
_TZ_DATETIME = Annotated[datetime, Meta(tz=True)]
_EXTRA_DIGITS = re.compile(r"(\.[0-9]{6})[0-9]+")


# Every optional field takes ``null`` for "absent" (clients that serialise None); the
# defaults are applied in ``_event_dict``.
class Actor(msgspec.Struct, forbid_unknown_fields=True):
    id: Annotated[str, Meta(min_length=1, max_length=256)]
    type: Annotated[str, Meta(min_length=1, max_length=64)] | None = None  # "user"
    name: Annotated[str, Meta(max_length=256)] | None = None


class Target(msgspec.Struct, forbid_unknown_fields=True):
    id: Annotated[str, Meta(max_length=256)] | None = None
    type: Annotated[str, Meta(max_length=64)] | None = None
    name: Annotated[str, Meta(max_length=256)] | None = None


class EventIn(msgspec.Struct, forbid_unknown_fields=True):
    occurred_at: Timestamp
    action: Action
    actor: Actor
    event_id: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    outcome: Literal["success", "failure", "unknown"] | None = None  # "success"
    severity: Literal["info", "notice", "warning", "critical"] | None = None  # "info"
    target: Target | None = None
    source_ip: Annotated[str, Meta(max_length=64)] | None = None
    user_agent: Annotated[str, Meta(max_length=512)] | None = None
    description: Annotated[str, Meta(max_length=2000)] | None = None
    metadata: dict[str, Any] | None = None


class _EventInRaw(EventIn, forbid_unknown_fields=True):
    """The fast path's view: metadata kept as the client's raw JSON, so the checks below can
    usually clear it with a few byte scans instead of a walk in Python."""

    metadata: msgspec.Raw = msgspec.Raw(b"null")


Body = _EventInRaw | Annotated[list[_EventInRaw], Meta(max_length=MAX_EVENTS_PER_REQUEST)]
_body_decoder = msgspec.json.Decoder(Body)
_any_decoder = msgspec.json.Decoder()


class InvalidJSON(Exception):
    """The body is not JSON at all (→ 400 with a parse message)."""


class InvalidEvents(Exception):
    """Validation failed. ``fields`` is the error tree: ``{field: [msg]}`` for one event,
    ``{"<index>": {field: [msg]}}`` for a list, or ``{"non_field_errors": [msg]}``."""

    def __init__(self, fields: dict):
        super().__init__("invalid events")
        self.fields = fields


class FieldError(ValueError):
    pass


# -- semantic checks (what msgspec cannot express) ---------------------------------------------
def _check_no_nul(value: str) -> None:
    if "\x00" in value:
        raise FieldError(_NUL_MESSAGE)


# RFC 3339 allows a seconds field of 60 (a leap second), which no datetime here holds.
_LEAP_SECOND = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:60(?:[.,][0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:?[0-9]{2})\Z"
)


def occurred_at_normalize(value: str, *, now: datetime) -> str:
    _check_no_nul(value)
    try:
        parsed = msgspec.convert(_EXTRA_DIGITS.sub(r"\1", value), _TZ_DATETIME)
    except msgspec.ValidationError:
        if _LEAP_SECOND.match(value):
            raise FieldError(
                "A leap second (:60) cannot be stored (PostgreSQL and Python have none): "
                "send :59.999999."
            ) from None
        raise FieldError(
            "Must be an RFC 3339 timestamp with an offset, e.g. 2026-11-29T10:00:00Z."
        ) from None
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:
        raise FieldError("Timestamp out of range.") from None
    if utc > now + MAX_FUTURE:
        raise FieldError("Must not be more than 5 minutes in the future.")
    return utc.isoformat(timespec="microseconds")


def source_ip_normalize(value: str | None) -> str | None:
    if value is None:
        return None
    if ipv4_is_canonical(value):  # the common case, without an ipaddress object
        return value
    # A zone index ("fe80::1%eth0") is accepted by Python but refused by PostgreSQL's inet.
    if "%" in value or "\x00" in value:
        raise FieldError("Must be an IPv4 or IPv6 address.")
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise FieldError("Must be an IPv4 or IPv6 address.") from None
    return _inet_text(ip)


def _inet_text(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """``ip.compressed``, except for the IPv6 forms PostgreSQL prints with an embedded IPv4
    (``::ffff:1.2.3.4``, ``::1.2.3.4``; its inet_net_ntop rule), so the text hashed by the
    ledger is the text the database returns."""
    if ip.version == 6:
        words = struct.unpack("!8H", ip.packed)
        if words[:5] == (0, 0, 0, 0, 0) and (
            (words[5] == 0 and words[6] != 0) or words[5] == 0xFFFF
        ):
            prefix = "::ffff:" if words[5] else "::"
            return prefix + str(ipaddress.IPv4Address(ip.packed[12:]))
    return ip.compressed


_JSON_BASES = (str, int, float, dict, list)  # bool cannot be subclassed
_DEPTH_MESSAGE = f"Nested deeper than {MAX_METADATA_DEPTH} levels (objects and arrays)."


def _metadata_walk(value: dict) -> bool:
    """Raise ``FieldError`` for what PostgreSQL jsonb or RFC 8785 cannot hold (a NUL, a
    number beyond ±(2^53-1), a non-finite number) or nesting deeper than the limit.

    The depth limit counts containers: ``value`` itself is level 1, and at most
    ``MAX_METADATA_DEPTH`` objects or arrays may be nested (empty or not); scalars inside
    the innermost one are allowed. The worker (``event_rows``) applies this same walk.

    Returns whether the value is *plain*: exact JSON types, no float, no key outside the
    Basic Multilingual Plane. orjson's sorted text of a plain value is its RFC 8785 form
    (the ledger's ``_json_dumps_is_jcs``), and only a float can make the text grow when it
    is serialized again. Exact type checks first (the JSON decoders only produce these),
    subclasses after.
    """
    plain = type(value) is dict
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            for key in node:
                if "\x00" in key:
                    raise FieldError(_NUL_MESSAGE)
                if type(key) is not str or (not key.isascii() and max(key) >= FIRST_NON_BMP):
                    plain = False  # JCS sorts by UTF-16 unit, orjson by code point
            children = node.values()
        else:
            children = node
        for child in children:
            kind = type(child)
            if kind is str:
                if "\x00" in child:
                    raise FieldError(_NUL_MESSAGE)
            elif kind is dict or kind is list:
                # Checked where a container is found, so an empty one counts as a level
                # and a scalar never does.
                if depth >= MAX_METADATA_DEPTH:
                    raise FieldError(_DEPTH_MESSAGE)
                stack.append((child, depth + 1))
            elif kind is int:
                if not -MAX_SAFE_INTEGER <= child <= MAX_SAFE_INTEGER:
                    raise FieldError("Integers must be within ±(2^53-1).")
            elif kind is bool or child is None:
                continue
            elif kind is float:
                plain = False
                # One comparison for both bounds: NaN and ±inf fail it too.
                if not -MAX_SAFE_INTEGER <= child <= MAX_SAFE_INTEGER:
                    if not math.isfinite(child):
                        raise FieldError("Numbers must be finite.")
                    raise FieldError(_RANGE_MESSAGE)
            else:
                # Never from the JSON decoders. A subclass of a JSON type is checked as its
                # base type: a container where it is, a scalar converted, in a one-item list
                # at its parent's depth (a scalar there adds no level). Anything else is
                # left to orjson and to the ledger's general path.
                plain = False
                base = next((t for t in _JSON_BASES if isinstance(child, t)), None)
                if base is dict or base is list:
                    if depth >= MAX_METADATA_DEPTH:
                        raise FieldError(_DEPTH_MESSAGE)
                    stack.append((child, depth + 1))
                elif base is not None:
                    stack.append(([base(child)], depth))
    return plain


def metadata_check(value: dict | None) -> dict:
    """Reject what PostgreSQL jsonb or RFC 8785 cannot hold; bound size and depth."""
    if value is None:
        return {}
    _metadata_walk(value)
    if len(orjson.dumps(value)) > MAX_METADATA_BYTES:
        raise FieldError(f"Must be at most {MAX_METADATA_BYTES} bytes serialized.")
    return value


class _UuidSource(threading.local):
    """Random version-4 UUIDs, reading the OS's randomness 256 at a time: one ``urandom``
    call per id was the single largest cost of a batch (a syscall per event)."""

    def __init__(self):
        self.pool = b""
        self.offset = 0
        self.pid = 0

    def __call__(self) -> str:
        # A forked child must never reuse bytes its parent handed out (duplicate ids).
        if self.offset >= len(self.pool) or self.pid != os.getpid():
            self.pool, self.offset, self.pid = os.urandom(16 * 256), 0, os.getpid()
        chunk = self.pool[self.offset : self.offset + 16]
        self.offset += 16
        return str(uuid.UUID(bytes=chunk, version=4))


new_id = _UuidSource()

# An event's id derives from its tenant and event_id (a version-5 UUID): a retry of an event
# already sent is answered with the id the first copy is stored under (the worker keeps that
# one), so the ids of a 202 always resolve. Never change it: stored ids were made with it.
EVENT_ID_NAMESPACE = uuid.UUID("3f1b6c2e-9a57-4c1e-8d2a-5b7e0c4f9a61")


def event_uuid(tenant_id: int, event_id: str) -> str:
    """``uuid5(EVENT_ID_NAMESPACE, f"{tenant_id}:{event_id}")``, as text."""
    return _uuid5_maker(tenant_id)(event_id)


# The RFC 4122 variant bits (10xx) over the high nibble of byte 8, as a hex digit.
_VARIANT_DIGIT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _uuid5_maker(tenant_id: int):
    """``event_uuid`` for one tenant, four times faster than ``uuid.uuid5`` (a batch of
    1,000 events makes 1,000 of them): the version and variant are set on the hex text."""
    prefix, sha1 = EVENT_ID_NAMESPACE.bytes + f"{tenant_id}:".encode(), hashlib.sha1

    def make(event_id: str) -> str:
        h = sha1(prefix + event_id.encode()).hexdigest()
        return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT_DIGIT[h[16]]}{h[17:20]}-{h[20:32]}"

    return make


def _metadata_fast(raw: msgspec.Raw) -> dict:
    data = bytes(raw)
    if data == b"null":
        return {}
    if not data.startswith(b"{"):
        raise FieldError("Expected `object`.")
    try:
        value = _any_decoder.decode(data)
    except (msgspec.DecodeError, RecursionError):
        raise FieldError("Invalid JSON object.") from None
    metadata_check_encoded(value, data)
    return value


def metadata_check_encoded(value: dict, data: bytes) -> bool:
    """``metadata_check`` of ``value`` decoded from ``data``, which stands for its size:
    orjson's compact text is never longer than any JSON text of the same value unless a
    float is re-written (``1e5`` becomes ``100000.0``), so it is only serialized again when
    ``data`` is over the limit or the value is not plain. Returns whether it is plain (see
    ``_metadata_walk``)."""
    plain = _metadata_walk(value)
    if (len(data) > MAX_METADATA_BYTES or not plain) and len(
        orjson.dumps(value)
    ) > MAX_METADATA_BYTES:
        raise FieldError(f"Must be at most {MAX_METADATA_BYTES} bytes serialized.")
    return plain


def _event_dict(ev: EventIn, *, now: datetime, received_at: str, make_id) -> dict:
    """The flat event of the worker contract. Raises FieldError-carrying InvalidEvents."""
    errors: dict[str, list[str]] = {}
    occurred_at = source_ip = metadata = None
    try:
        occurred_at = occurred_at_normalize(ev.occurred_at, now=now)
    except FieldError as exc:
        errors["occurred_at"] = [str(exc)]
    try:
        source_ip = source_ip_normalize(ev.source_ip)
    except FieldError as exc:
        errors["source_ip"] = [str(exc)]
    try:
        if isinstance(ev, _EventInRaw):
            metadata = _metadata_fast(ev.metadata)
        else:
            metadata = metadata_check(ev.metadata)
    except FieldError as exc:
        errors["metadata"] = [str(exc)]
    if errors:
        raise InvalidEvents(errors)
    target = ev.target or _NO_TARGET
    # One rule for every event: the id derives from (tenant, event_id), the server's
    # event_id (a fresh UUID) included. Were that UUID also the id, a later event sent with
    # it as its event_id would get a different (derived) id, be dropped by the worker as a
    # duplicate, and its 202 would name an id that never resolves.
    event_id = ev.event_id
    if event_id is None:
        event_id = new_id()
    pk = new_id() if make_id is None else make_id(event_id)
    return {
        "id": pk,
        "event_id": event_id,
        "occurred_at": occurred_at,
        "received_at": received_at,
        "action": ev.action,
        "outcome": ev.outcome or "success",
        "severity": ev.severity or "info",
        "actor_id": ev.actor.id,
        "actor_type": ev.actor.type or "user",
        "actor_name": ev.actor.name or "",
        "target_id": target.id or "",
        "target_type": target.type or "",
        "target_name": target.name or "",
        "source_ip": source_ip,
        "user_agent": ev.user_agent or "",
        "description": ev.description or "",
        "metadata": metadata,
    }


_NO_TARGET = Target()
_STRING_FIELDS = ("event_id", "action", "user_agent", "description")


def _has_nul(ev: EventIn) -> dict:
    errors = {}
    for name in _STRING_FIELDS:
        value = getattr(ev, name)
        if value is not None and "\x00" in value:
            errors[name] = [_NUL_MESSAGE]
    for name, obj in (("actor", ev.actor), ("target", ev.target)):
        if obj is None:
            continue
        nested = {
            f: [_NUL_MESSAGE] for f in ("id", "type", "name") if "\x00" in (getattr(obj, f) or "")
        }
        if nested:
            errors[name] = nested
    return errors


# -- detailed path: every bad field named ------------------------------------------------------
def _message(exc: msgspec.ValidationError) -> str:
    """msgspec's message in words a client's developer reads without knowing msgspec
    ("Expected `str | null`, got `int`" → "Must be a string or null, not an integer."), and
    without its ``- at `$...``` suffix (the field is named by the key)."""
    text = str(exc).split(" - at `", 1)[0]
    if match := _EXPECTED_TYPE.fullmatch(text):
        wanted = " or ".join(_JSON_TYPES.get(name, name) for name in match[1].split(" | "))
        return f"Must be {wanted}, not {_JSON_TYPES.get(match[2], match[2])}."
    if match := _EXPECTED_LENGTH.fullmatch(text):
        if match[1] == ">=" and match[2] == "1":
            return "Must not be empty."
        bound = "at most" if match[1] == "<=" else "at least"
        return f"Must be {bound} {int(match[2]):,} characters."
    return text


_EXPECTED_TYPE = re.compile(r"Expected `([a-z| ]+)`, got `([a-z]+)`")
_EXPECTED_LENGTH = re.compile(r"Expected `str` of length (<=|>=) ([0-9]+)")
_JSON_TYPES = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "null": "null",
    "object": "an object",
    "array": "a list",
}


_PATTERN_MESSAGES = {"action": "Must be 1-128 characters of A-Z, a-z, 0-9, '_', '.', ':', '-'."}


def _choices(annotation) -> list[str]:
    """The values a ``Literal[...] | None`` field takes (msgspec's "Invalid enum value" does
    not say them)."""
    if get_origin(annotation) is Literal:
        return [str(value) for value in get_args(annotation)]
    return [choice for arg in get_args(annotation) for choice in _choices(arg)]


def _struct_errors(item: Any, struct: type[msgspec.Struct], *, now: datetime) -> dict:
    if not isinstance(item, dict):
        return {"non_field_errors": ["Expected an object."]}
    errors: dict[str, Any] = {}
    info = msgspec.inspect.type_info(struct)
    known = {f.encode_name: f for f in info.fields}
    for name in item.keys() - known.keys():
        errors[name] = ["Unknown field."]
    for name, spec in known.items():
        if name not in item:
            if spec.required:
                errors[name] = ["This field is required."]
            continue
        annotation = struct.__annotations__[spec.name]
        nested = _nested_struct(annotation)
        value = item[name]
        if nested is not None and isinstance(value, dict):
            sub = _struct_errors(value, nested, now=now)
            if sub:
                errors[name] = sub
            continue
        try:
            converted = msgspec.convert(value, annotation)
        except msgspec.ValidationError as exc:
            message = _message(exc)
            if "matching regex" in message:
                message = _PATTERN_MESSAGES.get(name, message)
            elif message.startswith("Invalid enum value") and (choices := _choices(annotation)):
                message = f"Must be one of {', '.join(choices)}; got {value!r}."
            errors[name] = [message]
            continue
        check = _FIELD_CHECKS.get(name) if struct is EventIn else None
        try:
            if check is not None:
                check(converted, now)
            elif isinstance(converted, str):
                _check_no_nul(converted)
        except FieldError as exc:
            errors[name] = [str(exc)]
    return errors


def _nested_struct(annotation: Any) -> type[msgspec.Struct] | None:
    for candidate in (Actor, Target):
        if annotation is candidate or annotation == (candidate | None):
            return candidate
    return None


def _item_errors(item: Any, *, now: datetime) -> dict:
    return _struct_errors(item, EventIn, now=now)


# Checks msgspec cannot express, by field of EventIn; plain strings get the NUL check.
_FIELD_CHECKS: dict[str, Any] = {
    "occurred_at": lambda value, now: occurred_at_normalize(value, now=now),
    "source_ip": lambda value, now: source_ip_normalize(value),
    "metadata": lambda value, now: metadata_check(value),
}


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


_BYTE_ORDER_MARKS = (b"\xef\xbb\xbf", b"\xfe\xff", b"\xff\xfe")
# A high-surrogate escape (\uD800-\uDBFF) not followed by a low-surrogate one. Its backslash
# must follow an even number of backslashes: after an odd number it is itself escaped (the
# JSON string "\\ud800" holds the six characters \ud800, no surrogate).
_UNPAIRED_HIGH_SURROGATE = re.compile(
    rb"(?<!\\)(?:\\\\)*(\\u[dD][89abAB][0-9a-fA-F]{2})(?![\\]u[dD][c-fC-F][0-9a-fA-F]{2})"
)
_BYTE_POSITION = re.compile(r"byte (\d+)")


def _not_utf8(body: bytes) -> str:
    """Why ``body`` is not UTF-8 text, or "". A NUL byte is never in JSON text (it must be
    escaped in a string) but is in UTF-16 and UTF-32 text, which decodes as UTF-8 when it
    is ASCII: "invalid character" or "object keys must be strings (byte 1)" to msgspec."""
    nul = body.find(b"\x00")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        if nul == -1 or exc.start < nul:
            return f"byte {exc.start} (0x{body[exc.start]:02x}) is not valid UTF-8"
    if nul != -1:
        return f"byte {nul} is a NUL byte, as in UTF-16 or UTF-32 text"
    return ""


def _malformed_message(body: bytes, decoder_message: str) -> str:
    """The parse error for a body msgspec refused, where its own message misleads: it says
    "truncated" for an empty body and for an unpaired surrogate escape ("\\ud800"),
    "invalid character (byte 0)" for a byte-order mark, and "Invalid UTF-8 encoded string"
    or "object keys must be strings (byte 1)" for text in another encoding (Latin-1,
    UTF-16) than JSON's. Runs only for a malformed body."""
    if not body.strip(b" \t\r\n"):
        return "Malformed JSON: the request body is empty."
    if body.startswith(_BYTE_ORDER_MARKS):
        return (
            "Malformed JSON: the body starts with a byte-order mark (BOM), which is not "
            "allowed: it must start with the JSON text, in UTF-8 without a BOM."
        )
    not_utf8 = _not_utf8(body)
    if not_utf8:
        return f"Malformed JSON: the request body must be JSON encoded in UTF-8; {not_utf8}."
    if "truncated" in decoder_message or "surrogate" in decoder_message:
        # msgspec says "truncated" for a high surrogate escape near the end of the body (it
        # looks for the low half there), and "invalid utf-16 surrogate pair (byte N)" for
        # other unpaired ones, N being near the escape: find it before that byte.
        where = _BYTE_POSITION.search(decoder_message)
        end = int(where.group(1)) + 6 if where else len(body)
        match = _UNPAIRED_HIGH_SURROGATE.search(body, 0, end)
        if match is not None:
            escape, position = match.group(1).decode(), match.start(1)
            return (
                f"Malformed JSON: invalid string: unpaired UTF-16 surrogate {escape} "
                f"(byte {position}); a string must hold Unicode characters only."
            )
        if "surrogate" in decoder_message:  # a low half alone
            return (
                "Malformed JSON: invalid string: unpaired UTF-16 surrogate"
                f"{f' ({where.group()})' if where else ''}; a string must hold Unicode "
                "characters only."
            )
    return f"Malformed JSON: {decoder_message}"


# msgspec's messages for valid JSON holding a number it cannot give back: a float beyond a
# double (1e999), an integer of more digits than Python's int() reads (4,300 by default,
# sys.get_int_max_str_digits()).
_OUT_OF_RANGE = ("Number out of range", "Integer value out of range")


def _unreadable_int(text: str) -> int:
    """``int(text)``, or for an integer of more digits than Python reads, one just beyond
    the range metadata takes, of its sign: it is out of that range too, and so refused with
    the field named ("Integers must be within ±(2^53-1)."), as one digit fewer is."""
    try:
        return int(text)
    except ValueError:
        return -(MAX_SAFE_INTEGER + 1) if text.startswith("-") else MAX_SAFE_INTEGER + 1


def _detailed_errors(body: bytes, *, now: datetime) -> dict:
    try:
        data = _any_decoder.decode(body)
    except RecursionError:
        raise InvalidJSON("Malformed JSON: nested too deeply.") from None
    except msgspec.DecodeError as exc:
        if not any(message in str(exc) for message in _OUT_OF_RANGE):
            raise InvalidJSON(_malformed_message(body, str(exc))) from None
        # Valid JSON whose number no double holds (1e999) or whose integer is beyond
        # Python's digit limit: parse it the lenient way so the 400 names the field
        # (metadata_check refuses the resulting infinity, or _unreadable_int's stand-in).
        try:
            data = json.loads(body, parse_constant=_refuse_constant, parse_int=_unreadable_int)
        except (ValueError, RecursionError):
            raise InvalidJSON(f"Malformed JSON: {exc}") from None
    if isinstance(data, dict):
        errors = {"0": _item_errors(data, now=now)}
        _merge_errors(errors, _repeated_keys(body))
        return errors["0"]
    if not isinstance(data, list):
        return {"non_field_errors": ["Expected an event object or a list of event objects."]}
    if not data:
        return {"non_field_errors": ["Expected at least one event."]}
    if len(data) > MAX_EVENTS_PER_REQUEST:
        return {
            "non_field_errors": [
                f"At most {MAX_EVENTS_PER_REQUEST} events per request, got {len(data)}."
            ]
        }
    errors = {}
    for index, item in enumerate(data):
        item_errors = _item_errors(item, now=now)
        if item_errors:
            errors[str(index)] = item_errors
    # In the same answer as the other errors, not in a second round once they are fixed.
    raw = [item.get("event_id") if isinstance(item, dict) else None for item in data]
    _merge_errors(errors, _duplicate_ids(raw))
    _merge_errors(errors, _repeated_keys(body))
    return errors


_REPEATED = "Given more than once in one object: readers differ on which value counts."


class _Repeated(dict):
    """A JSON object of the body in which ``repeated`` keys appear more than once."""

    repeated: list[str]


def _repeated_keys(body: bytes) -> dict:
    """The fields of each item (by index, "0" for a single event) that hold a key twice in one
    object. msgspec, like every JSON parser here, keeps the last value; a proxy or SIEM that
    logged the request may show the first, and RFC 8785's canonical form assumes I-JSON, which
    forbids repeats: so the event is refused rather than stored with either value."""
    found = False

    def note_repeats(pairs: list) -> dict:
        nonlocal found
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        found = True
        marked = _Repeated(obj)
        # Counted, not keys.count() per key: an object of 200,000 keys would be quadratic.
        counts = Counter(key for key, _ in pairs)
        marked.repeated = sorted(key for key, count in counts.items() if count > 1)
        return marked

    try:
        data = json.loads(body, object_pairs_hook=note_repeats, parse_int=_unreadable_int)
    except (ValueError, RecursionError):
        return {}  # not JSON Python reads: the other checks name what is wrong
    if not found:
        return {}
    items = data if isinstance(data, list) else [data]
    errors = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        item_errors: dict = {}
        if isinstance(item, _Repeated):
            item_errors.update({key: [_REPEATED] for key in item.repeated})
        for name, value in item.items():
            if name in item_errors:
                continue
            if name in ("actor", "target") and isinstance(value, _Repeated):
                item_errors[name] = {key: [_REPEATED] for key in value.repeated}
            elif (key := _first_repeated(value)) is not None:
                item_errors[name] = [f"The key {key!r} is given more than once in one object."]
        if item_errors:
            errors[str(index)] = item_errors
    return errors


def _first_repeated(value) -> str | None:
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, _Repeated):
            return current.repeated[0]
        if isinstance(current, dict):
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
    return None


def _merge_errors(errors: dict, more: dict) -> None:
    """Adds ``more`` (by index) to ``errors`` (by index), keeping a field's first message."""
    for index, fields in more.items():
        item_errors = errors.setdefault(index, {})
        if isinstance(item_errors, dict):
            for name, messages in fields.items():
                item_errors.setdefault(name, messages)


def _duplicate_ids(event_ids: list) -> dict:
    """The later items that repeat an earlier one's ``event_id`` (strings only), by index."""
    seen: dict[str, int] = {}
    errors = {}
    for index, event_id in enumerate(event_ids):
        if not isinstance(event_id, str):
            continue
        first = seen.setdefault(event_id, index)
        if first != index:
            errors[str(index)] = {"event_id": [f"Duplicate of item {first} in this request."]}
    return errors


def _duplicate_errors(events: list[dict]) -> dict:
    """Policy: a batch may not repeat an ``event_id``; the later item is refused, by index,
    so the client learns which of its events collide (keeping the first would silently drop
    an event the client believes it sent)."""
    return _duplicate_ids([event["event_id"] for event in events])


def events_parse(
    body: bytes, *, now: datetime | None = None, tenant_id: int | None = None
) -> tuple[list[dict], bool]:
    """Validate and normalise a request body. Returns ``(events, is_list)``.

    An event without ``event_id`` is given a random UUID as its ``event_id``. With
    ``tenant_id`` every event's id is ``event_uuid(tenant_id, event_id)`` (so a later event
    sent with that ``event_id`` is answered with the stored copy's id); without it, a random
    UUID the caller cannot derive again.
    Raises ``InvalidJSON`` when the body is not JSON and ``InvalidEvents`` naming every bad
    field (by item index for a list) otherwise.
    """
    now = now or datetime.now(UTC)
    make_id = _uuid5_maker(tenant_id) if tenant_id is not None else None
    received_at = now.isoformat(timespec="microseconds")
    try:
        decoded = _body_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        decoded = None
    if decoded is not None:
        is_list = isinstance(decoded, list)
        items = decoded if is_list else [decoded]
        # A NUL can only arrive as the escape "\u0000" (a raw NUL byte is invalid JSON), so
        # most bodies skip the per-string scan.
        scan_nul = b"\\u0000" in body
        events = []
        try:
            for ev in items:
                if scan_nul and _has_nul(ev):
                    raise InvalidEvents({})
                events.append(_event_dict(ev, now=now, received_at=received_at, make_id=make_id))
        except InvalidEvents:
            pass
        else:
            if not events:
                raise InvalidEvents({"non_field_errors": ["Expected at least one event."]})
            refused = _duplicate_errors(events)
            _merge_errors(refused, _repeated_keys(body))
            if refused:
                raise InvalidEvents(refused if is_list else refused["0"])
            return events, is_list
    errors = _detailed_errors(body, now=now)
    if not errors:  # both paths must agree; never let a disagreement through unvalidated
        errors = {"non_field_errors": ["The request body is not a valid event or list."]}
    raise InvalidEvents(errors)


def event_normalize(
    data: dict, *, now: datetime | None = None, tenant_id: int | None = None
) -> dict:
    """Validate one event given as a Python dict (e.g. built by ``record_system_event``).
    ``tenant_id`` makes the id as for the API (``events_parse``)."""
    events, _ = events_parse(orjson.dumps(data), now=now, tenant_id=tenant_id)
    return events[0]
