"""A large JSONL export, checkpoints and key for timing ``tools/verify_export.py`` (not a test).

    .venv/bin/python bench/verify_export_file.py /tmp/vx --events 150000
    /usr/bin/time -v python3 tools/verify_export.py /tmp/vx/events.jsonl \
        --checkpoint /tmp/vx/checkpoints.json --public-key /tmp/vx/ledger.pub

No database: the events are chained with the server's own canonical form and hash
(``audit.ledger.canonical``) and written by the export's own ``event_document``, so the file
is what ``GET /api/v1/audit-events/export?format=jsonl`` would return for such a chain,
newest first by ``occurred_at`` (a client's clock runs a little behind or
ahead, so that is not quite sequence order). A page of 20 checkpoints (newest first, the
newest beyond the export, as after the export's own ``audit_log.export`` event) is signed
with a throwaway Ed25519 key whose public key is written beside it.
"""

import argparse
import hashlib
import json
import os
import random
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import django
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "traceledger.settings")
django.setup()  # settings only (event_document's module imports the models): no database

from audit.api.serializers import event_document  # noqa: E402 (after django.setup)
from audit.ledger.canonical import GENESIS_HASH, event_hash, format_timestamp  # noqa: E402

START = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def _document(sequence: int, prev_hash: str, rng: random.Random) -> dict:
    received = START + timedelta(milliseconds=40 * sequence)
    row = {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "sequence": sequence,
        "event_id": f"evt-{sequence:09d}",
        # The client's clock: up to 2 s behind, so the export's order (by occurred_at) is
        # not sequence order.
        "occurred_at": received - timedelta(milliseconds=rng.randrange(2000)),
        "received_at": received,
        "action": rng.choice(["invoice.update", "user.login", "report.export"]),
        "outcome": "success",
        "severity": "info",
        "actor_id": f"user-{rng.randrange(500)}",
        "actor_type": "user",
        "actor_name": "Ada Lovelace",
        "target_id": f"inv-{sequence}",
        "target_type": "invoice",
        "target_name": "Invoice",
        "source_ip": "203.0.113.7",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) bench",
        "description": f"Ada changed invoice {sequence}",
        "metadata": {"n": sequence, "amount": rng.randrange(10**6) / 100, "tags": ["a", "b"]},
    }
    row.update(tenant_slug="bench", prev_hash=prev_hash, hash=event_hash(prev_hash, row))
    # The export's own document builder, so the file is what the export writes.
    return event_document(row)


def _checkpoint(key: Ed25519PrivateKey, key_id: str, number: int, sequence: int, digest: str):
    signed_at = format_timestamp(START + timedelta(milliseconds=40 * sequence + 500))
    fields = {
        "tenant_id": 1,
        "sequence": sequence,
        "hash": digest,
        "signed_at": signed_at,
        "kind": "periodic",
        "details": {},
    }
    signature = key.sign(rfc8785.dumps(fields)).hex()
    return {"id": number, **fields, "signature": signature, "key_id": key_id}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    args.directory.mkdir(parents=True, exist_ok=True)

    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key_id = hashlib.sha256(raw).hexdigest()
    every = max(1, args.events // 19)  # 19 checkpoints within the export, one beyond it
    lines, checkpoints, prev = [], [], GENESIS_HASH
    for sequence in range(1, args.events + 2):
        document = _document(sequence, prev, rng)
        prev = document["hash"]
        if sequence % every == 0 or sequence == args.events + 1:
            checkpoints.append(_checkpoint(key, key_id, len(checkpoints) + 1, sequence, prev))
        if sequence <= args.events:  # the last one is the export's own, after the export
            lines.append((document["occurred_at"], document["id"], json.dumps(document)))
    lines.sort(reverse=True)  # the API's order: -occurred_at, -id
    with open(args.directory / "events.jsonl", "w", encoding="utf-8") as out:
        out.writelines(line + "\n" for _, _, line in lines)
    page = {"results": sorted(checkpoints, key=lambda c: -c["sequence"])[:20]}
    (args.directory / "checkpoints.json").write_text(json.dumps(page))
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (args.directory / "ledger.pub").write_bytes(pem)
    print(f"{args.events} events, {len(page['results'])} checkpoints in {args.directory}")


if __name__ == "__main__":
    main()
