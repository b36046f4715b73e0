"""tools/verify_export.py keeps a few dozen bytes per event, whatever the order of the lines
(docs/ledger.md §7): a 1,000,000-event export must not need gigabytes.

No database: the chains are made with the tool's own hash (the other offline-tool tests check
that it is the server's).
"""

import hashlib
import json
import random
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.tests.test_ledger_offline_tool import _run, _tool_module

START = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
EVENTS = 3_000
# Measured: about 130 bytes an event, 185 for a filtered file in no order (the sort of its
# sequences); the whole events, as the tool kept them before, took about 3,650.
BYTES_PER_EVENT = 1_000


@pytest.fixture(scope="module")
def tool():
    return _tool_module()


def _documents(tool, count: int) -> list[dict]:
    """A chain of ``count`` events in the export's shape, oldest first."""
    documents, prev = [], tool.GENESIS_HASH
    for sequence in range(1, count + 1):
        at = START + timedelta(seconds=sequence)
        document = {
            "id": str(uuid.uuid4()),
            "tenant": "acme",
            "event_id": f"evt-{sequence}",
            "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "received_at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "action": "invoice.update",
            "actor": {"id": f"user-{sequence % 7}", "type": "user", "name": "Ada Lovelace"},
            "target": {"id": f"inv-{sequence}", "type": "invoice", "name": "Invoice"},
            "source_ip": "203.0.113.7",
            "user_agent": "pytest",
            "description": f"Ada changed invoice {sequence}",
            "metadata": {"n": sequence, "amount": 12.5, "tags": ["a", "b"]},
            "sequence": sequence,
            "prev_hash": prev,
        }
        document["hash"] = prev = tool.event_hash(prev, document)
        documents.append(document)
    return documents


def _write(path: Path, documents: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in documents))
    return path


def _signed(tool, tmp_path: Path, document: dict, **changes) -> list[str]:
    """--checkpoint and --public-key arguments: a checkpoint at ``document`` (with
    ``changes`` to its fields), signed."""
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    checkpoint = {
        "id": 1,
        "tenant_id": 1,
        "kind": "periodic",
        "sequence": document["sequence"],
        "hash": document["hash"],
        "signed_at": document["received_at"],
        "details": {},
        "key_id": hashlib.sha256(raw).hexdigest(),
        **changes,
    }
    checkpoint["signature"] = key.sign(tool.checkpoint_message(checkpoint)).hex()
    (tmp_path / "checkpoint.json").write_text(json.dumps(checkpoint))
    (tmp_path / "ledger.pub").write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return [
        "--checkpoint",
        str(tmp_path / "checkpoint.json"),
        "--public-key",
        str(tmp_path / "ledger.pub"),
    ]


@pytest.mark.parametrize("filtered", [False, True], ids=["whole-newest-first", "filtered-shuffled"])
def test_it_keeps_little_memory_per_event(tool, tmp_path, capsys, filtered):
    """tracemalloc's peak over a whole run, checkpoint included, per event: the bound is
    over 5x what it takes and over 3x below what keeping the events took, so neither the
    tool's fixed cost nor another Python's object sizes fail it, and a regression does."""
    documents = _documents(tool, EVENTS)
    arguments = _signed(tool, tmp_path, documents[-2])  # kept by the filter too
    if filtered:  # every third left out (a filter by action), in no particular order
        documents = [d for d in documents if d["sequence"] % 3]
        random.Random(7).shuffle(documents)
        arguments.append("--allow-gaps")
    else:
        documents.reverse()
    export = _write(tmp_path / "events.jsonl", documents)

    tracemalloc.start()
    try:
        status = tool.main([str(export), *arguments])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # A third left out: most events are between gaps, tied to no checkpoint (docs/ledger.md §7).
    assert status == (3 if filtered else 0), capsys.readouterr().out
    assert peak / len(documents) < BYTES_PER_EVENT, f"{peak / len(documents):.0f} bytes an event"


def test_it_verifies_an_export_in_any_line_order(tool, tmp_path):
    documents = _documents(tool, 40)
    random.Random(3).shuffle(documents)
    export = _write(tmp_path / "events.jsonl", documents)

    result = _run(export)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["acme: 40 events verified", "verified"]


@pytest.mark.parametrize("allow_gaps", [False, True])
def test_it_names_both_lines_of_a_sequence_that_appears_twice(tool, tmp_path, allow_gaps):
    documents = _documents(tool, 10)
    lines = [*reversed(documents), documents[3]]  # sequence 4: line 7 and line 11
    export = _write(tmp_path / "events.jsonl", lines)

    result = _run(export, *(["--allow-gaps"] if allow_gaps else []))

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == (
        "NOT VERIFIED at line 11, sequence 4: sequence 4 appears twice (lines 7 and 11)\n"
    )


def test_it_names_the_lowest_bad_sequence_not_the_first_bad_line(tool, tmp_path):
    """Each line's hash is checked as it is read, and reported in sequence order."""
    documents = _documents(tool, 10)
    documents[8]["description"] = "tampered"  # sequence 9, line 2 (newest first)
    documents[2]["description"] = "tampered"  # sequence 3, line 8
    export = _write(tmp_path / "events.jsonl", list(reversed(documents)))

    result = _run(export)

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == (
        "NOT VERIFIED at line 8, sequence 3: hash does not match the event's content\n"
    )


def test_a_hash_written_otherwise_than_the_server_writes_it_does_not_link(tool, tmp_path):
    """The hashes are kept as bytes, yet compared as the file writes them: an upper-case
    prev_hash hashes the same, but it is not the previous event's hash."""
    documents = _documents(tool, 5)
    documents[3]["prev_hash"] = documents[3]["prev_hash"].upper()
    documents[3]["hash"] = tool.event_hash(documents[3]["prev_hash"], documents[3])
    export = _write(tmp_path / "events.jsonl", documents)

    result = _run(export)

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == (
        "NOT VERIFIED at line 4, sequence 4: prev_hash does not link to the previous event\n"
    )
