#!/usr/bin/env python3
"""Verify a TraceLedger JSONL export offline: no Django, no database, no network.

Needs Python 3.11+ and, for checkpoints only, the ``cryptography`` package.

    python tools/verify_export.py events.jsonl
    python tools/verify_export.py events.jsonl --checkpoint checkpoints.json --public-key key.pem

Each line is one event as the API returns it (``GET /api/v1/audit-events/export?format=jsonl``:
``actor``/``target`` objects, ``tenant`` slug) or flat with the database column names
(``actor_id``, ...), not both, and nothing else: a field no hash covers, or a key twice in one
object, is named rather than shown to a reader as part of a verified event. For each tenant,
events are put in ``sequence`` order and each one's ``hash`` is recomputed from its
``prev_hash`` and its content (the canonical form of docs/ledger.md, re-implemented here);
consecutive events must link (``prev_hash`` = the previous ``hash``) and a missing sequence is
a gap (``--allow-gaps`` for a filtered export).
A tenant's events must start at sequence 1, from 64 zeros, or, after a retention purge, right
after a ``purge`` checkpoint given with ``--checkpoint`` (its ``hash`` is the first event's
``prev_hash``); with ``--allow-gaps`` the start may be missing too, and the output says from
which sequence on the chain was verified. A file without events does not verify.

``--checkpoint`` (one checkpoint object, or a page of ``GET /api/v1/ledger/checkpoints``;
repeatable) is verified with the Ed25519 public key its ``key_id`` names, among those given with
``--public-key`` (a file may hold several, e.g. the current key and the retired ones after a
key rotation). Every given checkpoint's signature is checked: one that does not verify with
its key does not verify the export; one whose key is not given is named and not used (the
chosen one below must have its key). Of the given checkpoints, the one with the
highest sequence that falls within the export must verify and match the exported event at its
sequence (a ``purge`` checkpoint: the ``prev_hash`` of the event after it), and so must every
older one within it whose signature verified (the oldest one the export differs from is
named). Checkpoints beyond
the export's last event (signed after it, e.g. after the export's own ``audit_log.export``
event) are skipped and named; none within a whole export does not verify (with
``--allow-gaps``, its events are then only not anchored: exit 3). The events of a whole export
after the newest checkpoint within it are, like the newest events of any chain, only chained:
still verified (exit 0), and named in one line.

The checkpoints must be one tenant's, the export's (or ``--tenant``'s). The signature binds
their numeric ``tenant_id``, which the export does not carry; the API also labels each one
with the tenant's slug, ``tenant``, which is not signed. When the label is given and the
export names its tenant by slug, checkpoints of another tenant are refused as a mix-up of
files (exit 2), not reported as tampering; without it they are checked as before.

Every event at or below a checkpoint's sequence was stored, so received (``received_at`` is set
by the API before storage), before that checkpoint was signed. An exported event at or below
the sequence of a checkpoint whose signature verified, received more than ``--max-clock-skew``
seconds (default 60: the web and worker clocks may differ) after its ``signed_at``, proves that
the chain was cut after the checkpoint and rebuilt (e.g. its tail deleted, the head rewound
and new events chained in its place): not verified, naming the checkpoint and the event. This
also holds for a checkpoint beyond the export and with ``--allow-gaps``; an event whose
``received_at`` does not parse gives no such evidence.

The export is read once, in any order of its lines: each line's own hash is checked as it is
read, and only what the checks across lines need is kept (about 110 bytes an event, so a
1,000,000-event export takes about 140 MB; docs/ledger.md §7).

With ``--allow-gaps``, an event is only tamper-evident when it is anchored: followed, through
consecutive exported sequences, by an exported checkpoint whose signature and hash verified.
Any other event (the chain's start fixes only the first ``prev_hash``) could be edited and the
hashes after it in its stretch recomputed unnoticed: such events are counted and their
sequences named, and the export is not reported as verified (exit 3), also when no given
checkpoint falls within it.

Exit status: 0 verified, 1 not verified (the first bad line and sequence are named), 2 the
input could not be read (or the arguments do not fit it: checkpoints of another tenant), 3 not
fully verified: nothing was found wrong, but some events of a filtered export
(``--allow-gaps``) are not anchored.
"""

import argparse
import hashlib
import ipaddress
import json
import math
import os
import re
import sys
import uuid
from array import array
from bisect import bisect_left, bisect_right
from datetime import UTC, datetime, timedelta
from fractions import Fraction

GENESIS_HASH = "0" * 64
PEM_PUBLIC_KEY = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)
STRING_FIELDS = (
    "event_id",
    "action",
    "outcome",
    "severity",
    "actor_id",
    "actor_type",
    "actor_name",
    "target_id",
    "target_type",
    "target_name",
    "user_agent",
    "description",
)
DEFAULTS = {
    "outcome": "success",
    "severity": "info",
    "actor_type": "user",
    "actor_name": "",
    "target_id": "",
    "target_type": "",
    "target_name": "",
    "source_ip": None,
    "user_agent": "",
    "description": "",
    "metadata": {},
}
MAX_SAFE_INTEGER = 2**53 - 1


class Invalid(Exception):
    pass


class Unreadable(Exception):
    """A file argument that is not what its option takes (exit 2, named with the option)."""

    def __init__(self, named: str, path: str, expected: str, why: str):
        super().__init__(f"{named} {path} is not {expected}: {why}")


EXPORT_EXPECTED = "a JSONL export (one event per line)"
CHECKPOINT_EXPECTED = (
    "a checkpoint JSON file (one checkpoint, or a page of GET /api/v1/ledger/checkpoints)"
)
PUBLIC_KEY_EXPECTED = (
    "a public key file (PEM, as manage.py ledger_public_key prints it, or a saved "
    "GET /api/v1/ledger/public-key answer)"
)


# --- RFC 8785 (JSON Canonicalization Scheme) ------------------------------------------------


def _jcs_number(value) -> str:
    if isinstance(value, int):
        if abs(value) <= MAX_SAFE_INTEGER:
            return str(value)
        # A JSON number is a double: a float of the event comes back from the database (and
        # so in the export) as the integer its digits spell, e.g. 1e20 as 100000000000000000000.
        try:
            value = float(value)
        except OverflowError:
            raise Invalid(f"number {value} is beyond the range of a JSON number") from None
    if math.isnan(value) or math.isinf(value):
        raise Invalid("NaN and Infinity are not JSON")
    if value == 0:
        return "0"
    # ECMAScript Number::toString from the shortest round-trip digits (RFC 8785 §3.2.2.3).
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    integer, _, fraction = mantissa.partition(".")
    digits = (integer + fraction).lstrip("0")
    point = len(integer) + (int(exponent) if exponent else 0)  # decimal point position
    point -= len(integer + fraction) - len((integer + fraction).lstrip("0"))
    digits = digits.rstrip("0") or "0"
    k, n = len(digits), point
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        exp = n - 1
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if exp > 0 else "-")
        text += str(abs(exp))
    return sign + text


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _jcs_string(value: str) -> str:
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _utf16_key(key: str):
    return key.encode("utf-16-be")


# The canonical form recurses once per level of nesting: a limit well beyond what the server
# stores (metadata at most 32 levels deep, audit/validation.py) and well within Python's
# recursion limit makes a deeper value (a tampered file) an Invalid, not a RecursionError.
JCS_MAX_DEPTH = 100


def jcs(value, depth: int = 0) -> str:
    if depth > JCS_MAX_DEPTH:
        raise Invalid(f"nested deeper than {JCS_MAX_DEPTH} levels")
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return _jcs_number(value)
    if isinstance(value, str):
        return _jcs_string(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(jcs(item, depth + 1) for item in value) + "]"
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise Invalid(f"object key {key!r} is not a string")
        try:
            items = sorted(value.items(), key=lambda item: _utf16_key(item[0]))
        except UnicodeEncodeError:  # "\udc00": JSON can escape a lone surrogate
            raise Invalid("an object key is not Unicode text (a lone surrogate)") from None
        return "{" + ",".join(_jcs_string(k) + ":" + jcs(v, depth + 1) for k, v in items) + "}"
    raise Invalid(f"{type(value).__name__} is not a JSON value")


# --- the canonical event (docs/ledger.md, version 1) -----------------------------------------


def _timestamp(value, name: str) -> str:
    """The canonical text of the timestamp field ``name``: in UTC, with microseconds."""
    if not isinstance(value, str):
        raise Invalid(f"{name} is not a string: {value!r}")
    try:
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError as exc:
        raise Invalid(f"{name} is not an ISO 8601 timestamp: {value!r}") from exc
    if parsed.utcoffset() is None:
        raise Invalid(f"{name} has no UTC offset: {value!r}")
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-01:00 parses, but is in the year 10000 in UTC, which no
        # datetime holds (nor the server's column): no stored event or checkpoint has it.
        raise Invalid(f"{name} is outside the years 1-9999 in UTC: {value!r}") from None
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _ip(value):
    if value is None or value == "":
        return None
    try:
        address = ipaddress.ip_address(str(value))
    except ValueError as exc:
        raise Invalid(f"not an IP address: {value!r}") from exc
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return address.compressed


# Every field a line may hold: the hashed ones in either shape, and the database's columns the
# hash does not cover (docs/ledger.md: tenant, stored_at, submitted_by). Anything else would
# be read by a person as part of the event while no hash vouches for it.
NESTED_FIELDS = ("id", "type", "name")
EVENT_FIELDS = frozenset(
    {"id", "sequence", "occurred_at", "received_at", "source_ip", "metadata", "prev_hash", "hash"}
    | set(STRING_FIELDS)
    | {"actor", "target", "tenant", "tenant_id", "stored_at", "submitted_by"}
)


def flatten(event: dict) -> dict:
    """The API's nested shape (actor/target objects) → the database column names. A line
    holds one shape or the other: ``actor`` beside ``actor_id`` shows one name to a reader
    of the flat columns while the hash covers the other."""
    unknown = sorted(set(event) - EVENT_FIELDS)
    if unknown:
        raise Invalid(f"field {unknown[0]!r} is not part of an event (no hash covers it)")
    flat = dict(event)
    for part in ("actor", "target"):
        if part in flat:
            nested = flat.pop(part) or {}
            if not isinstance(nested, dict):
                raise Invalid(f"{part} is not an object")
            both = sorted(f"{part}_{key}" for key in NESTED_FIELDS if f"{part}_{key}" in flat)
            if both:
                raise Invalid(f"both {part} and {both[0]}: a line holds one shape or the other")
            extra = sorted(set(nested) - set(NESTED_FIELDS))
            if extra:
                raise Invalid(f"{part}.{extra[0]} is not part of an event (no hash covers it)")
            for key in NESTED_FIELDS:
                if key in nested:
                    flat[f"{part}_{key}"] = nested[key]
    return flat


def canonical_bytes(event: dict) -> bytes:
    flat = flatten(event)

    def get(field):
        if field in flat:
            return flat[field]
        if field in DEFAULTS:
            return DEFAULTS[field]
        raise Invalid(f"missing field {field!r}")

    sequence = get("sequence")
    if isinstance(sequence, bool) or not isinstance(sequence, int):
        raise Invalid(f"sequence must be an integer, got {sequence!r}")
    try:
        event_uuid = str(uuid.UUID(str(get("id"))))
    except ValueError as exc:
        raise Invalid(f"id is not a UUID: {get('id')!r}") from exc
    obj = {
        "id": event_uuid,
        "sequence": sequence,
        "occurred_at": _timestamp(get("occurred_at"), "occurred_at"),
        "received_at": _timestamp(get("received_at"), "received_at"),
        "source_ip": _ip(get("source_ip")),
        "metadata": get("metadata"),
    }
    if not isinstance(obj["metadata"], dict):
        raise Invalid("metadata is not an object")
    for field in STRING_FIELDS:
        value = get(field)
        if value is None and field.startswith("target_"):
            value = ""  # the API shows an absent target as null
        if not isinstance(value, str):
            raise Invalid(f"{field} is not a string")
        obj[field] = value
    # jcs(obj), member by member, so that a value it refuses is named with its field.
    members = []
    for name in sorted(obj):  # ASCII names: their UTF-16 order is this one
        try:
            members.append(f"{_jcs_string(name)}:{jcs(obj[name], 1)}".encode())
        except Invalid as exc:
            raise Invalid(f"{name}: {exc}") from None
        except UnicodeEncodeError:  # "\ud800": JSON can escape a lone surrogate
            raise Invalid(f"{name} is not Unicode text (a lone surrogate)") from None
    return b"{" + b",".join(members) + b"}"


def event_hash(prev_hash: str, event: dict) -> str:
    try:
        prev = bytes.fromhex(prev_hash)
    except (TypeError, ValueError) as exc:
        raise Invalid(f"prev_hash is not hex: {prev_hash!r}") from exc
    if len(prev) != 32:
        raise Invalid(f"prev_hash is not 64 hex digits: {prev_hash!r}")
    return hashlib.sha256(prev + canonical_bytes(event)).hexdigest()


def checkpoint_message(checkpoint: dict) -> bytes:
    return jcs(
        {
            "tenant_id": checkpoint["tenant_id"],
            "sequence": checkpoint["sequence"],
            "hash": checkpoint["hash"],
            "signed_at": _timestamp(checkpoint["signed_at"], "signed_at"),
            "kind": checkpoint["kind"],
            "details": checkpoint.get("details") or {},
        }
    ).encode("utf-8")


# --- verification ----------------------------------------------------------------------------


class CannotCheck(Exception):
    """Something this machine lacks stops the check (exit 2, as for unreadable input)."""


class Failure(Exception):
    def __init__(self, message: str, line: int | None = None, sequence: int | None = None):
        super().__init__(message)
        self.line, self.sequence = line, sequence


# What is kept of an event for the checks across lines (``Events``): its received_at as
# microseconds since the epoch, exact for any datetime (years 1-9999 fit in 64 bits), and
# NO_INSTANT, below every real instant, for one that does not parse.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
NO_INSTANT = INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
GENESIS_DIGEST = bytes(32)


def _micros(instant: datetime) -> int:
    return (instant - EPOCH) // MICROSECOND


def _utc_text(micros: int) -> str | None:
    """The instant as the export writes it (the canonical form's text); None beyond the
    years 1-9999 in UTC (e.g. 9999-12-31T23:00:00-05:00)."""
    try:
        naive = (EPOCH + micros * MICROSECOND).replace(tzinfo=None)
    except OverflowError:
        return None
    return naive.isoformat(timespec="microseconds") + "Z"


def _digest(value) -> bytes | None:
    """The 32 bytes of a hash written as the server writes it (64 lowercase hex digits); None
    for any other value."""
    if isinstance(value, str) and len(value) == 64:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            return None
        if raw.hex() == value:
            return raw
    return None


class Events:
    """One tenant's events as read, reduced to what the checks across lines need.

    Each line's own hash is checked as it is read (``failures`` keeps the outcome, reported
    when the walk in sequence order reaches the event, so the first bad sequence is named as
    before), and of the event only its sequence, line number, ``hash`` and ``prev_hash`` (32
    bytes each) and ``received_at`` (microseconds) are kept, in flat arrays: about 90 bytes an
    event (16 more for the ``Chain`` in sequence order), where its parsed JSON took about
    4 KB. A value the arrays cannot hold exactly (a hash that is not 64 lowercase hex digits,
    a sequence beyond 64 bits, a ``received_at`` not in the export's own form)
    is kept as it is, apart, so every check compares what the file holds."""

    def __init__(self):
        self.sequences: array | list = array("q")  # a list once one is beyond 64 bits
        self.lines = array("q")
        self.hashes = bytearray()  # 32 bytes per event, zeros for one in odd_hashes
        self.prev_hashes = bytearray()
        self.received = array("q")
        self.odd_hashes: dict[int, object] = {}
        self.odd_prev_hashes: dict[int, object] = {}
        self.received_texts: dict[int, object] = {}
        # Whether every line named the tenant with ``tenant`` (the API's slug), not only with
        # ``tenant_id``: only then is the key it is grouped by comparable with a checkpoint's
        # ``tenant``.
        self.by_slug = True
        # By index: None, the hash does not match the content; a str, why the event cannot be
        # canonicalized; another exception, raised where the walk reaches the event.
        self.failures: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.lines)

    def add(self, number: int, event: dict) -> None:
        """Keeps the event of line ``number``, whose ``sequence`` is an integer."""
        index = len(self.lines)
        sequence = event["sequence"]
        if isinstance(self.sequences, array) and not INT64_MIN <= sequence <= INT64_MAX:
            self.sequences = list(self.sequences)
        self.sequences.append(sequence)
        self.lines.append(number)
        prev_hash, stored = event.get("prev_hash"), event.get("hash")
        _put_digest(self.hashes, self.odd_hashes, index, stored)
        _put_digest(self.prev_hashes, self.odd_prev_hashes, index, prev_hash)
        text = event.get("received_at")
        instant = _instant(text)
        self.received.append(NO_INSTANT if instant is None else _micros(instant))
        if instant is None or _utc_text(self.received[index]) != text:
            self.received_texts[index] = text
        try:
            if event_hash(prev_hash, event) != stored:
                self.failures[index] = None
        except Invalid as exc:
            self.failures[index] = str(exc)
        except Exception as exc:
            # An error the tool does not turn into a finding (every malformed value it knows
            # of is an Invalid: this is a bug of the tool, not a verdict on the file):
            # raised, as before, only if the walk reaches it.
            self.failures[index] = exc

    def hash(self, index: int):
        """The event's ``hash``: its 32 bytes, or the file's value when it is not hex digits
        as the server writes them (and so never equal to the bytes of one that is)."""
        if index in self.odd_hashes:
            return self.odd_hashes[index]
        return bytes(self.hashes[32 * index : 32 * index + 32])

    def prev_hash(self, index: int):
        """The event's ``prev_hash``, as ``hash`` gives it."""
        if index in self.odd_prev_hashes:
            return self.odd_prev_hashes[index]
        return bytes(self.prev_hashes[32 * index : 32 * index + 32])

    def received_at(self, index: int):
        """The event's ``received_at`` as the file has it."""
        if index in self.received_texts:
            return self.received_texts[index]
        return _utc_text(self.received[index])

    def order(self) -> array | list:
        """The events' indices in sequence order; equal sequences in file order."""
        sequences = self.sequences
        if isinstance(sequences, array):
            return _dense_order(sequences) or array(
                "q", sorted(range(len(sequences)), key=sequences.__getitem__)
            )
        return sorted(range(len(sequences)), key=sequences.__getitem__)


def _put_digest(column: bytearray, odd: dict, index: int, value) -> None:
    digest = _digest(value)
    if digest is None:
        odd[index] = value
        digest = GENESIS_DIGEST  # a placeholder: odd holds the value
    column += digest


def _dense_order(sequences: array) -> array | None:
    """The sort of distinct consecutive sequences (any whole export, in any order) in one
    pass and 8 bytes an event; None for others (gaps, duplicates: a filtered or tampered
    file), which take a sort of the indices."""
    if not sequences:
        return array("q")
    low = min(sequences)
    if max(sequences) - low + 1 != len(sequences):
        return None
    slots = array("q", [-1]) * len(sequences)
    for index, sequence in enumerate(sequences):
        if slots[sequence - low] >= 0:
            return None
        slots[sequence - low] = index
    return slots


class Chain:
    """One tenant's verified events in sequence order: ``sequences`` (sorted) and, by
    bisection on it, each event's line, hashes and ``received_at``."""

    def __init__(self, events: Events, order: array | list):
        self.events, self.order = events, order
        if isinstance(events.sequences, array):
            self.sequences = array("q", (events.sequences[i] for i in order))
        else:  # integers beyond 64 bits
            self.sequences = [events.sequences[i] for i in order]

    def __len__(self) -> int:
        return len(self.sequences)

    def __contains__(self, sequence) -> bool:
        return self._index(sequence) is not None

    @property
    def first(self) -> int:
        return self.sequences[0]

    @property
    def last(self) -> int:
        return self.sequences[-1]

    def _index(self, sequence) -> int | None:
        position = bisect_left(self.sequences, sequence)
        if position < len(self.sequences) and self.sequences[position] == sequence:
            return self.order[position]
        return None

    def _at(self, sequence) -> int:
        index = self._index(sequence)
        if index is None:
            raise KeyError(sequence)
        return index

    def line(self, sequence) -> int:
        return self.events.lines[self._at(sequence)]

    def hash(self, sequence) -> str:
        """The event's ``hash`` as the file has it (verified, so 64 lowercase hex digits)."""
        digest = self.events.hash(self._at(sequence))
        return digest.hex() if isinstance(digest, bytes) else digest

    def prev_hash(self, sequence):
        """The event's ``prev_hash`` as the file has it."""
        digest = self.events.prev_hash(self._at(sequence))
        return digest.hex() if isinstance(digest, bytes) else digest

    def received(self, sequence) -> datetime | None:
        micros = self.events.received[self._at(sequence)]
        return None if micros == NO_INSTANT else EPOCH + micros * MICROSECOND

    def received_at(self, sequence):
        return self.events.received_at(self._at(sequence))

    def received_in_order(self):
        """Each event's ``received_at`` in microseconds (NO_INSTANT: it does not parse), in
        sequence order."""
        received = self.events.received
        return (received[index] for index in self.order)


class RepeatedKey(Exception):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _object_once_per_key(pairs: list) -> dict:
    """A JSON object, refused when a key repeats: Python keeps the last value, other readers
    the first, and only one of them is hashed."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise RepeatedKey(key)
            seen.add(key)
    return obj


def read_export(path: str) -> dict[str, Events]:
    """The events, by tenant (slug or id). Each line's own hash is checked as it is read;
    a line that is not a JSON object, or whose ``sequence`` is missing or not an integer,
    fails at once, before any chain is checked."""
    by_tenant: dict[str, Events] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in _text_lines(handle, "the export", path, EXPORT_EXPECTED):
            if not line.strip():
                continue
            try:
                event = json.loads(line, object_pairs_hook=_object_once_per_key)
            except RepeatedKey as exc:
                raise Failure(
                    f"key {exc.key!r} appears twice in one object: readers differ on which "
                    "value counts (the server never writes one twice)",
                    line=number,
                ) from None
            except json.JSONDecodeError as exc:
                hint = ""
                if number == 1 and line.startswith("id,"):
                    hint = " (this looks like the CSV export: export with format=jsonl)"
                raise Failure(f"not JSON: {exc}{hint}", line=number) from exc
            except (RecursionError, ValueError) as exc:
                # JSON beyond what Python reads (nested about 1,000 deep, an integer of over
                # 4,300 digits): nothing the server writes, so a tampered line.
                raise Failure(f"not readable as JSON: {exc}", line=number) from None
            if not isinstance(event, dict):
                raise Failure("not a JSON object", line=number)
            # An event is put in its chain by its sequence: without an integer one (a list, a
            # string, 3.0, true) it has no place there, and is named at once, as a line that
            # is not an object is.
            if "sequence" not in event:
                raise Failure("the event has no sequence", line=number)
            if type(event["sequence"]) is not int:
                raise Failure(f"sequence is not an integer: {event['sequence']!r}", line=number)
            tenant = str(event.get("tenant", event.get("tenant_id", "")))
            if tenant not in by_tenant:
                by_tenant[tenant] = Events()
            if "tenant" not in event:
                by_tenant[tenant].by_slug = False
            by_tenant[tenant].add(number, event)
    return by_tenant


def _text_lines(handle, named: str, path: str, expected: str):
    """The numbered lines of a text file; bytes that are not UTF-8 name the file."""
    try:
        yield from enumerate(handle, start=1)
    except UnicodeDecodeError as exc:
        raise Unreadable(named, path, expected, f"not UTF-8 text ({exc})") from exc


def _read_text(named: str, path: str, expected: str) -> str:
    with open(path, encoding="utf-8") as handle:
        try:
            return handle.read()
        except UnicodeDecodeError as exc:
            raise Unreadable(named, path, expected, f"not UTF-8 text ({exc})") from exc


def verify_chain(events: Events, *, allow_gaps: bool) -> Chain:
    """Checks one tenant's events in sequence order; returns their ``Chain`` when they
    verify. Of several findings, the one at the lowest sequence is reported."""
    order = events.order()
    sequences, lines = events.sequences, events.lines
    # The sequences are all integers (read_export), so sorted: an equal one is the previous one.
    previous = None
    for index in order:
        number, sequence = lines[index], sequences[index]
        if previous is not None and sequences[previous] == sequence:
            raise Failure(
                f"sequence {sequence} appears twice (lines {lines[previous]} and {number})",
                line=number,
                sequence=sequence,
            )
        prev_hash = events.prev_hash(index)
        if sequence == 1 and prev_hash != GENESIS_DIGEST:
            raise Failure("sequence 1 does not start from the genesis hash", number, sequence)
        if previous is not None:
            prev_sequence = sequences[previous]
            if sequence != prev_sequence + 1 and not allow_gaps:
                raise Failure(
                    f"sequence {prev_sequence + 1} is missing (line {number} holds sequence "
                    f"{sequence}, the next one found); a filtered export (e.g. by action or "
                    "date) verifies with --allow-gaps",
                    line=number,
                    sequence=prev_sequence + 1,
                )
            if sequence == prev_sequence + 1 and prev_hash != events.hash(previous):
                raise Failure("prev_hash does not link to the previous event", number, sequence)
        if index in events.failures:
            failure = events.failures[index]
            if failure is None:
                raise Failure("hash does not match the event's content", number, sequence)
            if isinstance(failure, str):
                raise Failure(f"cannot canonicalize: {failure}", number, sequence)
            raise failure
        previous = index
    return Chain(events, order)


CHECKPOINT_FIELDS = ("tenant_id", "sequence", "hash", "signed_at", "kind", "signature")


def load_checkpoints(paths: list[str]) -> list[dict]:
    """The checkpoints of the files (each one checkpoint or a page of them), in file order."""
    checkpoints = []
    for path in paths:
        text = _read_text("--checkpoint", path, CHECKPOINT_EXPECTED)
        try:
            data = json.loads(text)
        except (RecursionError, ValueError) as exc:  # RecursionError: nested too deep
            raise Unreadable("--checkpoint", path, CHECKPOINT_EXPECTED, str(exc)) from None
        if isinstance(data, dict) and isinstance(data.get("results"), list):
            if not data["results"]:
                # Unusable input, not a finding about the export (exit 2, not 1): the
                # tenant has no checkpoint signed yet (a new chain, or the signer stopped).
                raise Unreadable(
                    "--checkpoint",
                    path,
                    CHECKPOINT_EXPECTED,
                    "the page holds no checkpoint (none signed yet for this tenant?): "
                    "verify without --checkpoint, or once one is signed",
                )
            found = data["results"]  # a page is newest first
        else:
            found = [data]
        for checkpoint in found:
            if not isinstance(checkpoint, dict) or any(
                f not in checkpoint for f in CHECKPOINT_FIELDS
            ):
                raise Failure(f"{path} is not a checkpoint (needs {', '.join(CHECKPOINT_FIELDS)})")
            sequence = checkpoint["sequence"]
            if isinstance(sequence, bool) or not isinstance(sequence, int):
                raise Failure(f"{path}: a checkpoint's sequence is not an integer: {sequence!r}")
            for field in ("key_id", "signature", "signed_at", "hash", "tenant"):
                if field in checkpoint and not isinstance(checkpoint[field], str):
                    raise Failure(f"{path}: a checkpoint's {field} is not a string")
        checkpoints.extend(found)
    return checkpoints


def checkpoint_label(checkpoint: dict) -> str:
    number = f" #{checkpoint['id']}" if checkpoint.get("id") is not None else ""
    return f"checkpoint{number} at sequence {checkpoint['sequence']}"


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError as exc:
        # Exit 2, not 1: a missing package is no verdict on the files (integrity QA: a cron
        # alert read it as tampering).
        raise CannotCheck(
            "checking a checkpoint needs the 'cryptography' package (pip install cryptography)"
        ) from exc
    return InvalidSignature, serialization, Ed25519PublicKey


def load_public_keys(files: dict[str, str]) -> dict:
    """Every Ed25519 public key in the given PEM texts, by file name (a file may hold
    several, as ``manage.py ledger_public_key --retired`` prints them), by key id: the
    lowercase hex SHA-256 of the raw key, which a checkpoint's ``key_id`` names."""
    _, serialization, ed25519_public_key = _crypto()
    keys = {}
    for path, text in files.items():
        blocks = PEM_PUBLIC_KEY.findall(_pem_of_json(text))
        if not blocks:
            raise Unreadable(
                "--public-key", path, PUBLIC_KEY_EXPECTED, "it holds no PEM public key"
            )
        for block in blocks:
            try:
                key = serialization.load_pem_public_key(block.encode())
            except ValueError as exc:
                raise Unreadable("--public-key", path, PUBLIC_KEY_EXPECTED, str(exc)) from exc
            if not isinstance(key, ed25519_public_key):
                raise Failure(f"the public key in {path} is not an Ed25519 key")
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            keys[hashlib.sha256(raw).hexdigest()] = key
    return keys


def key_file_problem(path: str, text: str, *, checkpoint_paths: list[str]) -> str | None:
    """Why ``path`` cannot be the ``--public-key``: it is one of the ``--checkpoint`` files,
    or a saved page of checkpoints (which carries a ``public_key`` too). Whoever could edit
    the checkpoints could put their own key beside a forged signature (integrity QA: such a
    page given to both options verified a forged checkpoint)."""
    same = [c for c in checkpoint_paths if os.path.exists(c) and os.path.exists(path)]
    if path in checkpoint_paths or any(os.path.samefile(path, c) for c in same):
        return (
            f"--public-key {path} is also given as --checkpoint: the key must come apart from "
            "the checkpoints (manage.py ledger_public_key, or GET /api/v1/ledger/public-key "
            "saved on its own, from a source you trust)"
        )
    try:
        data = json.loads(text)
    except (RecursionError, ValueError):
        return None
    if isinstance(data, dict) and "results" in data:
        return (
            f"--public-key {path} is a page of checkpoints, not a public key: the key must "
            "come apart from the checkpoints (manage.py ledger_public_key, or GET "
            "/api/v1/ledger/public-key saved on its own, from a source you trust)"
        )
    return None


def _pem_of_json(text: str) -> str:
    """The PEM keys of a saved ``GET /api/v1/ledger/public-key`` answer (the current key and
    the retired ones); any other text as it is."""
    try:
        data = json.loads(text)
    except (RecursionError, ValueError):  # RecursionError: nested too deep
        return text
    if not isinstance(data, dict) or not isinstance(data.get("public_key"), str):
        return text
    retired = data.get("retired_keys")
    if not isinstance(retired, list):  # as an entry that is not an object: no key
        retired = []
    retired = [k.get("public_key") for k in retired if isinstance(k, dict)]
    return "".join(key for key in [data["public_key"], *retired] if isinstance(key, str))


def verify_signature(checkpoint: dict, keys: dict) -> None:
    """The checkpoint's signature by the key its ``key_id`` names (among ``keys``); a
    checkpoint without a ``key_id`` may be signed by any of them."""
    invalid_signature, _, _ = _crypto()
    label = checkpoint_label(checkpoint)
    wanted = checkpoint.get("key_id")
    if wanted is None:
        candidates = list(keys.values())
    elif wanted in keys:
        candidates = [keys[wanted]]
    else:
        given = ", ".join(f"{key_id[:16]}…" for key_id in keys)
        raise Failure(
            f"{label} was signed by key {str(wanted)[:16]}…, which is not among the given "
            f"public keys ({given}): give it with --public-key (a rotated-out key: manage.py "
            "ledger_public_key --retired, or retired_keys of GET /api/v1/ledger/public-key)",
            sequence=checkpoint["sequence"],
        )
    for key in candidates:
        try:
            key.verify(bytes.fromhex(checkpoint["signature"]), checkpoint_message(checkpoint))
        except (invalid_signature, Invalid, TypeError, ValueError):
            continue
        return
    raise Failure(f"{label}: the signature does not verify", sequence=checkpoint["sequence"])


def verify_checkpoint_against(checkpoint: dict, chain: Chain) -> None:
    sequence = checkpoint["sequence"]
    if sequence in chain:
        if chain.hash(sequence) != checkpoint["hash"]:
            raise Failure(
                f"the export differs from the signed checkpoint at sequence {sequence}",
                line=chain.line(sequence),
                sequence=sequence,
            )
        return
    if sequence + 1 in chain:  # a purge checkpoint: the export resumes right after it
        if chain.prev_hash(sequence + 1) != checkpoint["hash"]:
            raise Failure(
                f"the export does not resume from the signed checkpoint at sequence {sequence}",
                line=chain.line(sequence + 1),
                sequence=sequence + 1,
            )
        return
    raise Failure(f"the export has no event at the checkpoint's sequence {sequence}")


def verify_start(
    chain: Chain,
    checkpoints: list[dict] | None,
    keys: dict | None,
    *,
    name: str,
    allow_gaps: bool,
) -> tuple[str, int | None]:
    """Checks where one tenant's chain starts: at sequence 1 (``verify_chain`` checked that
    it starts from the genesis hash) or, after a retention purge (docs/ledger.md §4), right
    after a given ``purge`` checkpoint, whose signature is checked and whose ``hash`` must be
    the first event's ``prev_hash``. Anything else means the oldest events were cut from the
    file, unless ``allow_gaps`` (a filtered export): the chain is then verified only from its
    first sequence, which is returned with the summary's note."""
    first = chain.first
    line = chain.line(first)
    if first < 1:
        raise Failure(f"tenant {name}: sequences start at 1", line=line, sequence=first)
    if first == 1:
        return "", None
    purges = [c for c in checkpoints or () if c["kind"] == "purge"]
    anchors = [c for c in purges if c["sequence"] == first - 1]
    if anchors:
        verify_signature(anchors[0], keys)
        verify_checkpoint_against(anchors[0], chain)
        label = checkpoint_label(anchors[0])
        return (
            f", from sequence {first} on, after the purge {label} (signature and hash verified)",
            None,
        )
    if allow_gaps:
        return (
            f"; the chain was only verified from sequence {first} on (the events before it "
            "are not in the export: --allow-gaps)",
            first,
        )
    expected = "sequence 1 (from the genesis hash)"
    if purges:
        expected += "".join(
            f", or {c['sequence'] + 1} (after the purge {checkpoint_label(c)})" for c in purges
        )
    else:
        expected += (
            ", or, after a retention purge, the sequence after the tenant's purge checkpoint, "
            "given with --checkpoint"
        )
        if checkpoints is not None:
            expected += " (none of the given checkpoints is a purge checkpoint)"
    expected += "; a filtered export (e.g. by action or date) verifies with --allow-gaps"
    raise Failure(
        f"tenant {name}: the export starts at sequence {first}; expected {expected}",
        line=line,
        sequence=first,
    )


# How many stretches of unanchored sequences the summary names (a sparse filtered export may
# hold a million of them); the count of events is always given.
UNANCHORED_SHOWN = 5


def chain_unanchored(chain: Chain, *, vouched: set[int]) -> tuple[int, int, list[tuple[int, int]]]:
    """The events of a filtered export (``--allow-gaps``) that no signature protects:
    ``(events, stretches, the first UNANCHORED_SHOWN stretches as (first, last))``.

    A stretch is a run of consecutive exported sequences; ``verify_chain`` checked that each
    one's ``prev_hash`` is the previous one's ``hash``. An event edited with its hash
    recomputed changes every later hash of its run up to the run's last event, which no
    later event in the file links to: nothing shows it, unless an exported checkpoint
    sequence whose signature and hash verified (``vouched``) lies at or after the event in
    the same run. So an event is anchored only by such a checkpoint; the chain's start (the
    genesis hash) or a checkpoint just before a run fixes the run's first ``prev_hash``, not
    any event's content. The events of a run after its last such checkpoint, down to an
    event alone between two gaps, are consistent only with themselves."""
    sequences, pins = chain.sequences, sorted(p for p in vouched if p in chain)
    count, stretches, shown = 0, 0, []
    start = 0
    for position in range(1, len(sequences) + 1):
        if position < len(sequences) and sequences[position] == sequences[position - 1] + 1:
            continue
        first, last = sequences[start], sequences[position - 1]
        # The highest pin within [first, last]: everything up to it is anchored.
        pin = bisect_right(pins, last) - 1
        loose_from = pins[pin] + 1 if pin >= 0 and pins[pin] >= first else first
        if loose_from <= last:
            count += last - loose_from + 1
            stretches += 1
            if len(shown) < UNANCHORED_SHOWN:
                shown.append((loose_from, last))
        start = position
    return count, stretches, shown


def chain_after(name: str, chain: Chain, checkpoint: dict) -> str:
    """The line naming the events of a whole export after ``checkpoint``, the newest one
    within it. Like the newest events of any chain they are only chained: nothing wrong was
    found, so the verdict stands (docs/ledger.md §7), but the reader is told which events no
    signature covers."""
    first, last = checkpoint["sequence"] + 1, chain.last
    if last > first:
        which = f"sequences {first}-{last} ({last - first + 1} events) come"
    else:
        which = f"sequence {first} (1 event) comes"
    return (
        f"{name}: {which} after the newest checkpoint within the export "
        f"({checkpoint_label(checkpoint)}): chained, not anchored by a signature (edited, with "
        "their hashes recomputed, they would pass); a later checkpoint anchors "
        "them in a later export (docs/ledger.md §7)"
    )


def chain_gaps(chain: Chain, *, shown: int = 5) -> str:
    """The sequences between the export's first and last event that it lacks, named: a
    filtered export lacks them by design, a deleted event too, and only the reader can tell
    which (integrity QA: with --allow-gaps a deletion was never named)."""
    gaps, missing = [], 0
    previous = None
    for sequence in chain.sequences:
        if previous is not None and sequence > previous + 1:
            missing += sequence - previous - 1
            gaps.append((previous + 1, sequence - 1))
        previous = sequence
    if not gaps:
        return "no sequence missing between its first and last event"
    return (
        f"{missing} sequence{'s' if missing > 1 else ''} missing between its first and last "
        f"event, at {_stretches(gaps[:shown], len(gaps))}"
    )


def _stretches(shown: list[tuple[int, int]], stretches: int) -> str:
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in shown)
    return text + (f", … ({stretches} stretches)" if stretches > len(shown) else "")


def checkpoint_choose(checkpoints: list[dict], chain: Chain) -> dict:
    """Of the given checkpoints, the one with the highest sequence (normally the newest) that falls
    within the export: its sequence is exported, or the one after it (a purge checkpoint the
    export resumes from; a checkpoint in a gap of a filtered export). An export records its
    own ``audit_log.export`` event, so a checkpoint signed after it lies beyond the file's
    last event: such ones are skipped, and named."""
    first, last = chain.first, chain.last
    # Stable: of two at one sequence, the first given (a page is newest first).
    for checkpoint in sorted(checkpoints, key=lambda c: c["sequence"], reverse=True):
        sequence = checkpoint["sequence"]
        if sequence in chain or sequence + 1 in chain:
            return checkpoint
        if sequence > last:
            why = f"is beyond this export; skipped (the export ends at sequence {last})"
        elif sequence < first:
            why = f"is before this export; skipped (the export starts at sequence {first})"
        else:
            why = "falls in a gap of this export; skipped"
        print(f"{checkpoint_label(checkpoint)} {why}")
    raise Failure(
        f"none of the given checkpoints ({len(checkpoints)}) falls within this export "
        f"(sequences {first} to {last}), so it was checked against none: give checkpoints "
        "signed while these events were stored (a larger page_size, or the next page)"
    )


def checkpoint_within(checkpoints: list[dict], chain: Chain) -> dict | None:
    """The checkpoint ``checkpoint_choose`` takes, without naming the skipped ones; None when
    none falls within the export."""
    for checkpoint in sorted(checkpoints, key=lambda c: c["sequence"], reverse=True):
        if checkpoint["sequence"] in chain or checkpoint["sequence"] + 1 in chain:
            return checkpoint
    return None


def signatures_verify(checkpoints: list[dict], keys: dict, chosen: dict | None) -> list[dict]:
    """Checks the signature of every given checkpoint; returns those that verified. A bad
    signature under a given key does not verify the export (a forged or edited checkpoint);
    one whose key is not given is named and left out, except ``chosen`` (the one the export is
    checked against), which must have its key."""
    verified = []
    for checkpoint in checkpoints:
        wanted = checkpoint.get("key_id")
        if checkpoint is not chosen and wanted is not None and wanted not in keys:
            print(
                f"{checkpoint_label(checkpoint)} was signed by key {str(wanted)[:16]}…, which is "
                "not among the given public keys; its signature was not checked, and it was "
                "not used"
            )
            continue
        verify_signature(checkpoint, keys)
        verified.append(checkpoint)
    return verified


def _instant(value) -> datetime | None:
    """An RFC 3339 timestamp (``Z`` or an offset) as an aware datetime; None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        return None
    return parsed if parsed.utcoffset() is not None else None


def received_after_checkpoints(checkpoints: list[dict], chain: Chain, *, skew: float) -> None:
    """Fails when an exported event at or below a checkpoint's sequence was received more than
    ``skew`` seconds after the checkpoint was signed. In an untouched chain every such event
    was stored (and so received: ``received_at`` is set by the API, before storage) before the
    signing; one received after it is in a chain that was cut and rebuilt. ``checkpoints``
    must be ones whose signature verified. Of several contradictions, the lowest sequence is
    named (the first event of the rebuilt chain in the export)."""
    sequences = chain.sequences
    # peaks[i]: the latest received_at among the first i + 1 exported events (microseconds;
    # one that does not parse, NO_INSTANT, is below them all), so the first event received
    # after a time is found by bisection (an export may hold 10^6 events and a page 500
    # checkpoints).
    peak, peaks = _micros(datetime.min.replace(tzinfo=UTC)), array("q")
    for received in chain.received_in_order():
        if received > peak:
            peak = received
        peaks.append(peak)
    # In integer microseconds, not signed + timedelta(seconds=skew): a datetime ends at the
    # year 9999 and a timedelta at 999,999,999 days, and any finite skew is a valid answer
    # (1e20 s allows every delay), as is a checkpoint signed in 9999.
    allowed = round(Fraction(skew) * 1_000_000)
    found = None
    for checkpoint in checkpoints:
        signed = _instant(checkpoint["signed_at"])
        if signed is None:
            continue
        limit = _micros(signed) + allowed
        below = bisect_right(sequences, checkpoint["sequence"])  # events at or below it
        index = bisect_right(peaks, limit, hi=below)
        if index < below and (found is None or sequences[index] < found[0]):
            found = (sequences[index], checkpoint, signed)
    if found is None:
        return
    sequence, checkpoint, signed = found
    line, received = chain.line(sequence), chain.received(sequence)
    last = chain.last
    number = f" #{checkpoint['id']}" if checkpoint.get("id") is not None else ""
    where = (
        f"the export ends at sequence {last} and sequence {sequence} (line {line})"
        if checkpoint["sequence"] > last
        else f"sequence {sequence} (line {line}), at or below it,"
    )
    if sequence - 1 in chain:
        why = f"events after sequence {sequence - 1} were removed and the chain rebuilt"
    elif sequence == 1:
        why = "the whole chain was removed and rebuilt"
    else:
        why = f"the chain was cut before sequence {sequence} and rebuilt"
    raise Failure(
        f"checkpoint{number}, signed at {checkpoint['signed_at']}, vouches for sequence "
        f"{checkpoint['sequence']}, but {where} was received at {chain.received_at(sequence)}, "
        f"{(received - signed).total_seconds():.0f} s after that signing (beyond the allowed "
        f"clock skew of {skew:g} s, --max-clock-skew): {why}",
        line=line,
        sequence=sequence,
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"not a number of seconds, 0 or more: {text!r}")
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="JSONL export, one event per line")
    parser.add_argument(
        "--checkpoint",
        action="append",
        help="a checkpoint or a page of them (JSON) to check the export against; repeatable "
        "(e.g. a page of recent ones and the purge checkpoint); every one's signature is "
        "checked, the newest within the export is matched against it, and no exported event "
        "at or below one's sequence may have been received after it was signed",
    )
    parser.add_argument(
        "--public-key",
        action="append",
        help="PEM public key(s) (manage.py ledger_public_key; --retired adds rotated-out keys), "
        "or a saved GET /api/v1/ledger/public-key answer (JSON); a file may hold several, and "
        "the option may be repeated: each checkpoint is checked with the key its key_id names",
    )
    parser.add_argument("--tenant", help="the tenant slug the checkpoints belong to")
    parser.add_argument(
        "--allow-gaps", action="store_true", help="a filtered export: do not require every sequence"
    )
    parser.add_argument(
        "--max-clock-skew",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="how much later than a checkpoint's signed_at an event at or below its sequence "
        "may have been received (the web and worker clocks may differ; default 60): an event "
        "received later proves the chain was cut after the checkpoint and rebuilt",
    )
    args = parser.parse_args(argv)

    try:
        by_tenant = read_export(args.export)
        if not by_tenant:
            raise Failure("the export holds no events")
        checkpoints, keys, checked = None, None, None
        if args.checkpoint:
            checkpoints = load_checkpoints(args.checkpoint)
            if not args.public_key:
                # Never the key that the checkpoint page carries: whoever could edit the
                # files could swap the key along with the signature.
                parser.error("--checkpoint needs --public-key (obtained apart from the export)")
            tenant_ids = sorted({str(c["tenant_id"]) for c in checkpoints})
            if len(tenant_ids) > 1:
                parser.error(
                    f"the checkpoints are of several tenants (tenant_id {', '.join(tenant_ids)}): "
                    "give one tenant's"
                )
            # The tenant's slug the API adds to each checkpoint: not signed (the signature
            # binds tenant_id, which an export does not carry), a label that tells another
            # tenant's checkpoints from tampering. Checkpoints saved without it are checked as
            # before: the export's hashes alone tell whether they are its tenant's.
            slugs = sorted({c["tenant"] for c in checkpoints if "tenant" in c})
            if len(slugs) > 1:
                parser.error(
                    f"the checkpoints are of several tenants ({', '.join(slugs)}): give one "
                    "tenant's"
                )
            key_texts = {
                path: _read_text("--public-key", path, PUBLIC_KEY_EXPECTED)
                for path in args.public_key
            }
            for path, text in key_texts.items():
                if problem := key_file_problem(path, text, checkpoint_paths=args.checkpoint):
                    parser.error(problem)
            keys = load_public_keys(key_texts)
            if args.tenant:
                if args.tenant not in by_tenant:
                    raise Failure(f"the export has no events of tenant {args.tenant!r}")
                checked = args.tenant
            elif len(by_tenant) == 1:
                checked = next(iter(by_tenant))
            else:
                named = f" (the checkpoints are tenant {slugs[0]}'s)" if slugs else ""
                parser.error(
                    f"the export holds several tenants: name the checkpoint's --tenant{named}"
                )
            if slugs and slugs[0] != checked and by_tenant[checked].by_slug:
                # A mix-up of files, not a verdict on them: usage, exit 2.
                against = (
                    f"not of tenant {checked} (--tenant)"
                    if args.tenant
                    else f"this export is of tenant {checked}"
                )
                parser.error(
                    f"these checkpoints are of tenant {slugs[0]}, {against}: give tenant "
                    f"{checked}'s checkpoints"
                )
        chains, partial, fragments = {}, [], []
        for tenant, events in sorted(by_tenant.items()):
            name = tenant or "(no tenant)"
            chain = chains[tenant] = verify_chain(events, allow_gaps=args.allow_gaps)
            note, verified_from = verify_start(
                chain,
                checkpoints if tenant == checked else None,
                keys,
                name=name,
                allow_gaps=args.allow_gaps,
            )
            if verified_from is not None:
                partial.append(f"{name}: only from sequence {verified_from}")
            if verified_from is None and len(chain) == chain.last - chain.first + 1:
                print(f"{name}: {len(events)} events verified{note}")
                continue
            # A filtered export: what "verified" may claim is told once the checkpoints are.
            fragments.append(tenant)
            print(
                f"{name}: {len(events)} events, with gaps (--allow-gaps): each one's hash and "
                f"its link to the exported event before it verified{note}; {chain_gaps(chain)}"
            )
        vouched: set[int] = set()
        checkpoint = None
        if checkpoints:
            chain = chains[checked]
            verified = signatures_verify(checkpoints, keys, checkpoint_within(checkpoints, chain))
            received_after_checkpoints(verified, chain, skew=args.max_clock_skew)
            try:
                checkpoint = checkpoint_choose(checkpoints, chain)
            except Failure as none_within:
                if not args.allow_gaps:
                    raise
                # Nothing wrong was found: the filtered events are only not anchored (exit 3,
                # below), not tampered with (exit 1).
                print(f"{none_within}; no event is anchored by a checkpoint")
                checkpoint = None
        if checkpoint is not None:
            verify_signature(checkpoint, keys)
            # Every verified one within the export, oldest first: the first one the export
            # differs from is named, as the server's verification names it.
            within = [c for c in verified if c["sequence"] in chain or c["sequence"] + 1 in chain]
            for other in sorted([*within, checkpoint], key=lambda c: c["sequence"]):
                verify_checkpoint_against(other, chain)
                vouched.add(other["sequence"])
            print(f"{checkpoint_label(checkpoint)}: signature and hash verified")
            # The one just before the first event (a purge checkpoint) is in the start's line.
            inside = [c for c in within if c["sequence"] in chain and c is not checkpoint]
            if older := len(inside):
                plural = "s" if older > 1 else ""
                print(f"{older} older checkpoint{plural} within the export: hash verified")
            if checked not in fragments and chain.last > checkpoint["sequence"]:
                print(chain_after(checked or "(no tenant)", chain, checkpoint))
    except Failure as failure:
        where = []
        if failure.line is not None:
            where.append(f"line {failure.line}")
        if failure.sequence is not None:
            where.append(f"sequence {failure.sequence}")
        print(f"NOT VERIFIED{' at ' + ', '.join(where) if where else ''}: {failure}")
        return 1
    except (CannotCheck, OSError, Unreadable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    unanchored = []
    for tenant in fragments:
        name, chain = tenant or "(no tenant)", chains[tenant]
        count, stretches, shown = chain_unanchored(
            chain, vouched=vouched if tenant == checked else set()
        )
        if not count:
            print(
                f"{name}: all {len(chain)} events anchored (each linked, through consecutive "
                "exported sequences, to a later exported checkpoint whose signature and hash "
                "verified)"
            )
            continue
        unanchored.append(f"{name}: {count} of {len(chain)} events not anchored")
        print(
            f"{name}: {count} of {len(chain)} events not anchored, at sequences "
            f"{_stretches(shown, stretches)}: no exported checkpoint whose signature and hash "
            "verified follows them through consecutive exported sequences, so they are "
            "consistent only with themselves (one edited and the hashes after it recomputed "
            "would pass); compare them with the server's stored hashes, or verify an "
            "unfiltered export (docs/ledger.md §7)"
        )
    if unanchored:
        # Neither "verified" (rc 0: a script would take the edited event as proven) nor
        # "not verified" (rc 1: nothing was found wrong).
        print(f"NOT FULLY VERIFIED ({'; '.join(unanchored + partial)})")
        return 3
    print(f"verified ({'; '.join(partial)})" if partial else "verified")
    return 0


if __name__ == "__main__":
    # The output names values of the files, and JSON can escape a lone surrogate ("\ud800",
    # not Unicode text, so not encodable): written as an escape, not an error.
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(errors="backslashreplace")
    sys.exit(main())
