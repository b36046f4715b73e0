"""tools/verify_export.py: verifies an export and a checkpoint offline, without Django."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache

from audit.ledger.canonical import canonical_bytes
from audit.ledger.services import checkpoints_sign
from audit.ledger.signing import public_key_pem
from audit.models import AuditEvent, Checkpoint
from audit.tests.ledger_factories import chained_events_create

TOOL = Path(__file__).resolve().parents[2] / "tools" / "verify_export.py"
pytestmark = pytest.mark.django_db


def _tool_module():
    spec = importlib.util.spec_from_file_location("verify_export", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _api_document(event: AuditEvent) -> dict:
    """The export's JSON shape (ARCHITECTURE §3/§4), built here from the stored row."""
    target = None
    if event.target_id or event.target_type or event.target_name:
        target = {"id": event.target_id, "type": event.target_type, "name": event.target_name}
    return {
        "id": str(event.id),
        "tenant": event.tenant.slug,
        "event_id": event.event_id,
        "occurred_at": event.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "received_at": event.received_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "action": event.action,
        "outcome": event.outcome,
        "severity": event.severity,
        "actor": {"id": event.actor_id, "type": event.actor_type, "name": event.actor_name},
        "target": target,
        "source_ip": event.source_ip,
        "user_agent": event.user_agent,
        "description": event.description,
        "metadata": event.metadata,
        "sequence": event.sequence,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def _write_export(path: Path, tenant, *, newest_first=True) -> list[dict]:
    events = AuditEvent.objects.filter(tenant=tenant).select_related("tenant").order_by("sequence")
    documents = [_api_document(e) for e in events]
    lines = reversed(documents) if newest_first else documents
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in lines))
    return documents


def _run(*args) -> subprocess.CompletedProcess:
    # -I: isolated mode, no site-specific settings or environment (no DJANGO_SETTINGS_MODULE).
    return subprocess.run(
        [sys.executable, "-I", str(TOOL), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def chain(tenant):
    chained_events_create(tenant_id=tenant.id, count=5, target_id="", target_type="")
    chained_events_create(
        tenant_id=tenant.id, count=5, start=5, source_ip="::ffff:10.0.0.1", metadata={"x": 0.1}
    )
    return tenant


def test_the_tool_imports_nothing_of_django():
    source = TOOL.read_text()
    assert "django" not in source.lower().replace("no django", "")


def test_its_canonical_form_equals_the_servers_for_stored_rows(chain):
    tool = _tool_module()
    for event in AuditEvent.objects.filter(tenant=chain).select_related("tenant"):
        assert tool.canonical_bytes(_api_document(event)) == canonical_bytes(event)


def test_it_verifies_an_untampered_export(chain, tmp_path):
    export = tmp_path / "events.jsonl"
    _write_export(export, chain)

    result = _run(export)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "10 events verified" in result.stdout


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(description="nothing to see"),
        lambda d: d["actor"].update(id="mallory"),
        lambda d: d["metadata"].update(x=0.2),
        lambda d: d.update(occurred_at="2026-01-02T03:04:05.000001Z"),
        lambda d: d.update(source_ip="10.0.0.2"),
    ],
)
def test_it_names_the_line_and_sequence_of_a_tampered_event(chain, tmp_path, change):
    export = tmp_path / "events.jsonl"
    documents = _write_export(export, chain, newest_first=False)
    change(documents[6])  # sequence 7, line 7
    export.write_text("".join(json.dumps(d) + "\n" for d in documents))

    result = _run(export)

    assert result.returncode == 1
    assert "NOT VERIFIED at line 7, sequence 7" in result.stdout


def test_it_names_a_removed_line_as_a_gap(chain, tmp_path):
    export = tmp_path / "events.jsonl"
    documents = _write_export(export, chain, newest_first=False)
    del documents[3]
    export.write_text("".join(json.dumps(d) + "\n" for d in documents))

    result = _run(export)

    assert result.returncode == 1
    # The line named is the one that holds what follows the gap, and a filtered export's
    # reader is told how to verify one.
    assert (
        "NOT VERIFIED at line 4, sequence 4: sequence 4 is missing (line 4 holds sequence 5, "
        "the next one found); a filtered export (e.g. by action or date) verifies with "
        "--allow-gaps"
    ) in result.stdout


def _after_newest(tenant: str, first: int, last: int, checkpoint: str) -> str:
    """The line naming a whole export's events after the newest checkpoint within it
    (``checkpoint``: its label, e.g. ``checkpoint #4 at sequence 9``): verified, but only
    chained (docs/ledger.md §7)."""
    which = (
        f"sequences {first}-{last} ({last - first + 1} events) come"
        if last > first
        else f"sequence {first} (1 event) comes"
    )
    return (
        f"{tenant}: {which} after the newest checkpoint within the export ({checkpoint}): "
        "chained, not anchored by a signature (edited, with their hashes recomputed, they "
        "would pass); a later checkpoint anchors them in a later export (docs/ledger.md §7)"
    )


def _checkpoint_file(path: Path, checkpoint: Checkpoint, **changes) -> Path:
    data = {
        "tenant_id": checkpoint.tenant_id,
        "kind": checkpoint.kind,
        "sequence": checkpoint.sequence,
        "hash": checkpoint.hash,
        "signed_at": checkpoint.signed_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "signature": checkpoint.signature,
        "key_id": checkpoint.key_id,
        "details": checkpoint.details,
        **changes,
    }
    path.write_text(json.dumps(data))
    return path


def test_it_verifies_a_signed_checkpoint_against_the_export(chain, tmp_path):
    [checkpoint] = checkpoints_sign()
    export, key = tmp_path / "events.jsonl", tmp_path / "key.pem"
    _write_export(export, chain)
    key.write_text(public_key_pem())

    good = _run(
        export,
        "--checkpoint",
        _checkpoint_file(tmp_path / "cp.json", checkpoint),
        "--public-key",
        key,
    )
    changed = _run(
        export,
        "--checkpoint",
        _checkpoint_file(tmp_path / "bad.json", checkpoint, hash="e" * 64),
        "--public-key",
        key,
    )

    assert good.returncode == 0, good.stdout + good.stderr
    assert "signature and hash verified" in good.stdout
    assert changed.returncode == 1
    assert "signature does not verify" in changed.stdout


def _export_and_page_with_key(chain, tmp_path) -> tuple[Path, Path]:
    """An export and a saved checkpoints page, which carries the public key as the API's does."""
    [checkpoint] = checkpoints_sign()
    export = tmp_path / "events.jsonl"
    _write_export(export, chain)
    single = json.loads(_checkpoint_file(tmp_path / "cp.json", checkpoint).read_text())
    page = tmp_path / "page.json"
    page.write_text(json.dumps({"public_key": public_key_pem(), "results": [single]}))
    return export, page


def test_it_never_trusts_the_public_key_that_comes_with_the_checkpoint(chain, tmp_path):
    """A checkpoint page carries the key; whoever edits the files can swap both, so the
    tool refuses to verify a signature without a key given apart from the export."""
    export, page = _export_and_page_with_key(chain, tmp_path)

    result = _run(export, "--checkpoint", page)

    assert result.returncode == 2
    assert "--checkpoint needs --public-key" in result.stderr
    assert "signature" not in result.stdout


def test_it_refuses_the_checkpoint_page_as_the_public_key(chain, tmp_path):
    """Given to both options, a page whose checkpoint and key were forged together verified
    (integrity QA). Neither the same file nor any page of checkpoints is a key."""
    export, page = _export_and_page_with_key(chain, tmp_path)
    copy = tmp_path / "copy-of-page.json"
    copy.write_text(page.read_text())

    same = _run(export, "--checkpoint", page, "--public-key", page)
    other = _run(export, "--checkpoint", page, "--public-key", copy)

    assert same.returncode == other.returncode == 2
    assert "is also given as --checkpoint" in same.stderr
    assert "is a page of checkpoints, not a public key" in other.stderr
    assert "verified" not in same.stdout + other.stdout


def test_a_missing_cryptography_package_is_exit_2_not_a_verdict(chain, tmp_path):
    """Without site-packages (-S), no cryptography: "NOT VERIFIED", exit 1, read as
    tampering to a cron alert (integrity QA)."""
    [checkpoint] = checkpoints_sign()
    export, key = tmp_path / "events.jsonl", tmp_path / "key.pem"
    _write_export(export, chain)
    key.write_text(public_key_pem())
    cp = _checkpoint_file(tmp_path / "cp.json", checkpoint)

    arguments = [export, "--checkpoint", cp, "--public-key", key]
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(TOOL), *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert "needs the 'cryptography' package" in result.stderr
    assert "NOT VERIFIED" not in result.stdout


def test_a_signed_checkpoint_catches_a_consistently_rewritten_export(chain, tmp_path):
    [checkpoint] = checkpoints_sign()
    tool = _tool_module()
    export, key = tmp_path / "events.jsonl", tmp_path / "key.pem"
    documents = _write_export(export, chain, newest_first=False)
    # Rewrite event 3 and re-hash everything after it: the chain alone still links.
    documents[2]["description"] = "rewritten"
    prev = documents[1]["hash"]
    for document in documents[2:]:
        document["prev_hash"] = prev
        document["hash"] = prev = tool.event_hash(prev, document)
    export.write_text("".join(json.dumps(d) + "\n" for d in documents))
    key.write_text(public_key_pem())

    assert _run(export).returncode == 0
    result = _run(
        export,
        "--checkpoint",
        _checkpoint_file(tmp_path / "cp.json", checkpoint),
        "--public-key",
        key,
    )

    assert result.returncode == 1
    assert "differs from the signed checkpoint at sequence 10" in result.stdout


def test_it_verifies_the_real_jsonl_export_endpoint(chain, key_client, tmp_path):
    cache.clear()
    response = key_client(scopes=["read"]).get("/api/v1/audit-events/export", {"format": "jsonl"})
    assert response.status_code == 200
    export = tmp_path / "export.jsonl"
    export.write_bytes(b"".join(response.streaming_content))

    result = _run(export)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "10 events verified" in result.stdout


def test_it_verifies_an_export_holding_floats_beyond_the_safe_integers(
    tenant, key_client, tmp_path
):
    """The database gives 1e20 back as 100000000000000000000, and so does the export."""
    chained_events_create(tenant_id=tenant.id, count=3, metadata={"n": 1e20, "m": -1.5e16})
    cache.clear()
    response = key_client(scopes=["read"]).get("/api/v1/audit-events/export", {"format": "jsonl"})
    export = tmp_path / "export.jsonl"
    export.write_bytes(b"".join(response.streaming_content))
    assert b'"n":100000000000000000000' in export.read_bytes()

    result = _run(export)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 events verified" in result.stdout


def test_a_csv_export_is_named_as_such(tmp_path):
    export = tmp_path / "events.csv"
    export.write_text("id,tenant,event_id\n1,acme,x\n")

    result = _run(export)

    assert result.returncode == 1
    assert "this looks like the CSV export: export with format=jsonl" in result.stdout


DER_KEY = bytes.fromhex("302a300506032b6570032100") + b"\xd7" * 32  # a key as DER, not PEM
BAD_PEM = b"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n"
CHECKPOINT_EXPECTED = (
    "is not a checkpoint JSON file (one checkpoint, or a page of GET /api/v1/ledger/checkpoints)"
)
KEY_EXPECTED = (
    "is not a public key file (PEM, as manage.py ledger_public_key prints it, or a saved "
    "GET /api/v1/ledger/public-key answer)"
)


@pytest.mark.parametrize(
    ("wrong", "content", "error"),
    [
        pytest.param(
            "checkpoint",
            "public_key",
            f"--checkpoint {{path}} {CHECKPOINT_EXPECTED}: Expecting value: line 1 column 1",
            id="checkpoint-is-the-pem-key",
        ),
        pytest.param(
            "checkpoint",
            DER_KEY,
            f"--checkpoint {{path}} {CHECKPOINT_EXPECTED}: not UTF-8 text",
            id="checkpoint-is-binary",
        ),
        pytest.param(
            "public_key",
            "checkpoint",
            f"--public-key {{path}} {KEY_EXPECTED}: it holds no PEM public key",
            id="key-is-the-checkpoint",
        ),
        pytest.param(
            "public_key",
            DER_KEY,
            f"--public-key {{path}} {KEY_EXPECTED}: not UTF-8 text",
            id="key-is-der",
        ),
        pytest.param(
            "public_key", BAD_PEM, f"--public-key {{path}} {KEY_EXPECTED}: ", id="key-is-bad-pem"
        ),
        # A tenant with no checkpoint signed yet: README's recipe then saves an empty page,
        # which said "NOT VERIFIED" (exit 1, tampering) of a genuine export.
        pytest.param(
            "checkpoint",
            b'{"next": null, "previous": null, "results": []}',
            f"--checkpoint {{path}} {CHECKPOINT_EXPECTED}: the page holds no checkpoint",
            id="checkpoint-page-is-empty",
        ),
        pytest.param(
            "export",
            DER_KEY,
            "the export {path} is not a JSONL export (one event per line): not UTF-8 text",
            id="export-is-binary",
        ),
    ],
)
def test_a_file_argument_of_the_wrong_kind_is_named_with_its_option(
    chain, tmp_path, wrong, content, error
):
    [checkpoint] = checkpoints_sign()
    files = {
        "export": tmp_path / "events.jsonl",
        "checkpoint": _checkpoint_file(tmp_path / "cp.json", checkpoint),
        "public_key": tmp_path / "ledger.pub",
    }
    _write_export(files["export"], chain)
    files["public_key"].write_text(public_key_pem())
    path = tmp_path / "wrong.file"
    path.write_bytes(content if isinstance(content, bytes) else files[content].read_bytes())
    files[wrong] = path

    result = _run(
        files["export"],
        "--checkpoint",
        files["checkpoint"],
        "--public-key",
        files["public_key"],
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: {error.format(path=path)}"), result.stderr
    assert "Traceback" not in result.stderr
