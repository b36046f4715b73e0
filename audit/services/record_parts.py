"""A list too long for one audit event's metadata, recorded across several events.

An operator may discard 4,000 dead letters at once, and a selection export holds up to
1,000 event ids (~40 bytes each); an event's metadata holds 16 KiB. The action has already
committed when it is recorded, so a record that cannot be stored would leave it out of the
trail (and answer 500). Each part is an event of its own, numbered ``part`` of ``parts``.
"""

from collections.abc import Callable

import orjson

from audit.validation import MAX_METADATA_BYTES

# Room kept for what ``build`` adds that grows with the items (a sum, say) beyond an empty
# list's metadata, and for the part numbers' digits.
_SLACK = 64

Part = tuple[int, int] | None  # (part, parts), 1-based; None when everything fits in one


def metadata_parts(
    build: Callable[[list, Part], dict], items: list
) -> list[tuple[list, Part, dict]]:
    """``(chunk, part, metadata)`` of each record: ``items`` whole with ``build(items,
    None)`` when that fits the limit, else consecutive chunks, as few as fit, each with
    ``build(chunk, (k, n))``.

    ``build`` places the chunk in its metadata (nested or not) and should add the part
    numbers to it; the chunk's own bytes are its items' JSON plus a comma each.
    """
    whole = build(items, None)
    if _size(whole) <= MAX_METADATA_BYTES:
        return [(items, None, whole)]
    room = MAX_METADATA_BYTES - _size(build([], (1, 1))) - _SLACK
    chunks: list[list] = []
    current: list = []
    used = 0
    for item in items:
        cost = len(orjson.dumps(item)) + 1
        if cost > room:
            raise ValueError(f"an item of {cost} bytes cannot fit any record's metadata")
        if current and used + cost > room:
            chunks.append(current)
            current, used = [], 0
        current.append(item)
        used += cost
    chunks.append(current)
    parts = []
    for k, chunk in enumerate(chunks, 1):
        part = (k, len(chunks))
        parts.append((chunk, part, build(chunk, part)))
    oversized = [p for _, p, metadata in parts if _size(metadata) > MAX_METADATA_BYTES]
    if oversized:
        raise ValueError(f"parts {oversized} outgrew the metadata limit: build adds too much")
    return parts


def part_suffix(part: Part) -> str:
    """`` (part 2 of 3)`` for a description, nothing for a whole record."""
    return f" (part {part[0]} of {part[1]})" if part else ""


def _size(metadata: dict) -> int:
    return len(orjson.dumps(metadata))
