"""tools/verify_export.py: where an export must start and end, and which checkpoint it is
checked against (docs/ledger.md §7).

An export must start at sequence 1, or right after the purge checkpoint of a retention purge;
a page of checkpoints is checked through its newest one within the export, since checkpoints
signed after the export (its own ``audit_log.export`` event moved the head) lie beyond it.
"""

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.cache import cache

from audit.ledger.keyring import public_key_to_pem
from audit.ledger.services import checkpoint_create, checkpoints_sign, events_purge
from audit.ledger.signing import key_id_of, public_key_pem
from audit.tests.ledger_factories import chained_events_create
from audit.tests.test_ledger_offline_tool import (
    _after_newest,
    _checkpoint_file,
    _run,
    _tool_module,
    _write_export,
)

pytestmark = pytest.mark.django_db
CHECKPOINTS = "/api/v1/ledger/checkpoints"


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()


@pytest.fixture
def key(ledger_public_key_file) -> Path:
    return ledger_public_key_file


@pytest.fixture
def chain(tenant):
    chained_events_create(tenant_id=tenant.id, count=10)
    return tenant


def _write_lines(path: Path, documents: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in documents))
    return path


def _checkpoint_page(key_client, path: Path, page_size: int = 20, for_tenant=None) -> Path:
    """What the docs tell users to fetch: GET /api/v1/ledger/checkpoints?page_size=20."""
    client = key_client(scopes=["read"], for_tenant=for_tenant)
    response = client.get(CHECKPOINTS, {"page_size": page_size})
    assert response.status_code == 200
    path.write_bytes(response.content)
    return path


def _received(day: int) -> dict:
    at = datetime(2026, 1, day, 12, tzinfo=UTC)
    return {"occurred_at": at, "received_at": at}


@pytest.fixture
def purged(tenant):
    """Sequences 1-3 received on January 1st and purged; 4-8 kept; a purge checkpoint at 3."""
    chained_events_create(tenant_id=tenant.id, count=3, **_received(1))
    chained_events_create(tenant_id=tenant.id, count=5, start=3, **_received(5))
    checkpoints_sign()  # a periodic checkpoint at 8, before the purge
    result = events_purge(tenant_id=tenant.id, before=datetime(2026, 1, 2, tzinfo=UTC))
    assert (result.through_sequence, result.checkpoint.kind) == (3, "purge")
    return result.checkpoint


# --- where the export starts -------------------------------------------------------------------


def test_an_export_whose_oldest_events_were_removed_does_not_verify(chain, tmp_path):
    documents = _write_export(tmp_path / "all.jsonl", chain, newest_first=False)
    export = _write_lines(tmp_path / "cut.jsonl", documents[3:])  # sequences 4-10

    result = _run(export)

    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "NOT VERIFIED at line 1, sequence 4: tenant acme: the export starts at sequence 4; "
        "expected sequence 1 (from the genesis hash)"
    ) in result.stdout
    assert "a filtered export (e.g. by action or date) verifies with --allow-gaps" in (
        result.stdout
    )
    assert "verified" not in result.stdout.splitlines()


def test_a_recent_periodic_checkpoint_does_not_excuse_a_removed_head(chain, tmp_path, key):
    [checkpoint] = checkpoints_sign()  # at sequence 10, within the cut export
    documents = _write_export(tmp_path / "all.jsonl", chain, newest_first=False)
    export = _write_lines(tmp_path / "cut.jsonl", documents[3:])
    single = _checkpoint_file(tmp_path / "c.json", checkpoint)

    result = _run(export, "--checkpoint", single, "--public-key", key)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "the export starts at sequence 4" in result.stdout
    assert "none of the given checkpoints is a purge checkpoint" in result.stdout


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_a_file_without_events_does_not_verify(tmp_path, content):
    export = tmp_path / "empty.jsonl"
    export.write_text(content)

    result = _run(export)

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == "NOT VERIFIED: the export holds no events\n"


def test_with_allow_gaps_it_says_the_chain_was_only_verified_from_the_first_sequence(
    chain, tmp_path
):
    """Without a checkpoint, nothing ties events 4-10 to the ledger: not fully verified."""
    documents = _write_export(tmp_path / "all.jsonl", chain, newest_first=False)
    export = _write_lines(tmp_path / "filtered.jsonl", documents[3:])

    result = _run(export, "--allow-gaps")

    assert result.returncode == 3, result.stdout + result.stderr
    assert "; the chain was only verified from sequence 4 on" in result.stdout
    assert "acme: 7 of 7 events not anchored, at sequences 4-10: " in result.stdout
    assert result.stdout.splitlines()[-1] == (
        "NOT FULLY VERIFIED (acme: 7 of 7 events not anchored; acme: only from sequence 4)"
    )


def test_with_allow_gaps_a_complete_export_is_verified_without_reservation(chain, tmp_path):
    export = tmp_path / "events.jsonl"
    _write_export(export, chain)

    result = _run(export, "--allow-gaps")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "verified"


def test_every_tenant_of_the_export_must_start_at_genesis(tenant, other_tenant, tmp_path):
    chained_events_create(tenant_id=tenant.id, count=3)
    chained_events_create(tenant_id=other_tenant.id, count=4)
    acme = _write_export(tmp_path / "acme.jsonl", tenant, newest_first=False)
    globex = _write_export(tmp_path / "globex.jsonl", other_tenant, newest_first=False)
    export = _write_lines(tmp_path / "both.jsonl", acme + globex[2:])

    result = _run(export)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "acme: 3 events verified" in result.stdout
    assert "line 4, sequence 3: tenant globex: the export starts at sequence 3" in result.stdout


# --- after a retention purge -------------------------------------------------------------------


def test_a_purged_chain_verifies_from_its_purge_checkpoint(
    tenant, purged, key_client, tmp_path, key
):
    export = tmp_path / "events.jsonl"
    _write_export(export, tenant)
    page = _checkpoint_page(key_client, tmp_path / "checkpoints.json")

    result = _run(export, "--checkpoint", page, "--public-key", key)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"acme: 5 events verified, from sequence 4 on, after the purge checkpoint #{purged.pk} "
        "at sequence 3 (signature and hash verified)"
    ) in result.stdout
    # The purge checkpoint is named once, as where verification starts: not as "within".
    assert "within the export" not in result.stdout
    assert result.stdout.splitlines()[-1] == "verified"


def test_a_purged_chain_needs_its_purge_checkpoint(tenant, purged, tmp_path):
    export = tmp_path / "events.jsonl"
    _write_export(export, tenant)

    result = _run(export)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "tenant acme: the export starts at sequence 4" in result.stdout
    assert "after a retention purge, the sequence after the tenant's purge checkpoint" in (
        result.stdout
    )


def test_the_purge_checkpoint_can_be_given_apart_from_the_page(
    tenant, purged, key_client, tmp_path, key
):
    """The purge checkpoint is soon off the first page: it is given as a second file."""
    export = tmp_path / "events.jsonl"
    _write_export(export, tenant)
    chained_events_create(tenant_id=tenant.id, count=2, start=20, **_received(6))
    [periodic] = checkpoints_sign()  # at 10, beyond the export
    recent = _checkpoint_file(tmp_path / "recent.json", periodic)
    purge = _checkpoint_file(tmp_path / "purge.json", purged, id=purged.pk)

    without = _run(export, "--checkpoint", recent, "--public-key", key)
    both = _run(export, "--checkpoint", recent, "--checkpoint", purge, "--public-key", key)

    assert without.returncode == 1
    assert "none of the given checkpoints is a purge checkpoint" in without.stdout
    assert both.returncode == 0, both.stdout + both.stderr
    assert f"after the purge checkpoint #{purged.pk} at sequence 3" in both.stdout
    assert "checkpoint at sequence 10 is beyond this export; skipped" in both.stdout


def test_an_export_cut_after_the_purge_checkpoint_does_not_verify(
    tenant, purged, key_client, tmp_path, key
):
    documents = _write_export(tmp_path / "all.jsonl", tenant, newest_first=False)
    export = _write_lines(tmp_path / "cut.jsonl", documents[1:])  # 5-8: 4 removed too
    page = _checkpoint_page(key_client, tmp_path / "checkpoints.json")

    result = _run(export, "--checkpoint", page, "--public-key", key)

    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "the export starts at sequence 5; expected sequence 1 (from the genesis hash), or 4 "
        f"(after the purge checkpoint #{purged.pk} at sequence 3)"
    ) in result.stdout


def test_an_export_that_does_not_resume_from_the_purge_checkpoint_does_not_verify(
    tenant, purged, tmp_path, key
):
    """Events 4-8 replaced by a consistent forgery: their chain links, but not to the
    signed purge checkpoint."""
    tool = _tool_module()
    documents = _write_export(tmp_path / "all.jsonl", tenant, newest_first=False)
    prev = "f" * 64
    for document in documents:
        document["prev_hash"] = prev
        document["hash"] = prev = tool.event_hash(prev, document)
    export = _write_lines(tmp_path / "forged.jsonl", documents)
    purge = _checkpoint_file(tmp_path / "purge.json", purged)

    result = _run(export, "--checkpoint", purge, "--public-key", key)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "sequence 4: the export does not resume from the signed checkpoint at sequence 3" in (
        result.stdout
    )


# --- which checkpoint of a page ----------------------------------------------------------------


@pytest.fixture
def exported_then_signed(tenant, key_client, tmp_path):
    """Checkpoints at 5 and 10, the export (1-10), then the export's own event and another
    (11-12) and the next periodic checkpoint at 12: the documented procedure."""
    chained_events_create(tenant_id=tenant.id, count=5)
    checkpoints_sign()
    chained_events_create(tenant_id=tenant.id, count=5, start=5)
    checkpoints_sign()
    export = tmp_path / "events.jsonl"
    export.write_bytes(
        b"".join(
            key_client(scopes=["read"])
            .get("/api/v1/audit-events/export", {"format": "jsonl"})
            .streaming_content
        )
    )
    chained_events_create(tenant_id=tenant.id, count=2, start=10, action="audit_log.export")
    checkpoints_sign()
    return export


def test_checkpoints_beyond_the_export_are_skipped_and_the_newest_within_it_is_checked(
    tenant, exported_then_signed, key_client, tmp_path, key
):
    page = _checkpoint_page(key_client, tmp_path / "checkpoints.json")
    ids = {c["sequence"]: c["id"] for c in json.loads(page.read_text())["results"]}
    assert sorted(ids) == [5, 10, 12]

    result = _run(exported_then_signed, "--checkpoint", page, "--public-key", key)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "acme: 10 events verified",
        f"checkpoint #{ids[12]} at sequence 12 is beyond this export; skipped (the export "
        "ends at sequence 10)",
        f"checkpoint #{ids[10]} at sequence 10: signature and hash verified",
        "1 older checkpoint within the export: hash verified",
        "verified",
    ]


def test_an_older_signed_checkpoint_the_export_differs_from_is_named(
    tenant, exported_then_signed, key_client, tmp_path, key
):
    # Signed with the real key, but not what the chain holds at 3: a chain rewritten from 3
    # on, with the newer checkpoints re-signed to match, differs from it alone.
    checkpoint_create(tenant_id=tenant.id, sequence=3, hash="0" * 64, kind="periodic")
    page = _checkpoint_page(key_client, tmp_path / "checkpoints.json")

    result = _run(exported_then_signed, "--checkpoint", page, "--public-key", key)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT VERIFIED at line 8, sequence 3: the export differs from the signed checkpoint" in (
        result.stdout
    )


def test_a_checkpoint_whose_key_id_is_not_a_string_is_named_not_a_crash(
    tenant, exported_then_signed, key_client, tmp_path, key
):
    page = _checkpoint_page(key_client, tmp_path / "checkpoints.json")
    document = json.loads(page.read_text())
    document["results"][0]["key_id"] = ["not", "a", "key"]
    page.write_text(json.dumps(document))

    result = _run(exported_then_signed, "--checkpoint", page, "--public-key", key)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "a checkpoint's key_id is not a string" in result.stdout


def test_no_checkpoint_within_the_export_does_not_verify(
    tenant, exported_then_signed, key_client, tmp_path, key
):
    page = _checkpoint_page(key_client, tmp_path / "checkpoints.json", page_size=1)

    result = _run(exported_then_signed, "--checkpoint", page, "--public-key", key)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "at sequence 12 is beyond this export; skipped" in result.stdout
    assert (
        "NOT VERIFIED: none of the given checkpoints (1) falls within this export (sequences 1 "
        "to 10)"
    ) in result.stdout


def test_it_does_not_fall_back_to_an_older_checkpoint_when_the_newest_within_fails(
    tenant, exported_then_signed, key_client, tmp_path, key
):
    page = _checkpoint_page(key_client, tmp_path / "checkpoints.json")
    data = json.loads(page.read_text())
    for checkpoint in data["results"]:
        if checkpoint["sequence"] == 10:
            checkpoint["hash"] = "e" * 64
    page.write_text(json.dumps(data))

    result = _run(exported_then_signed, "--checkpoint", page, "--public-key", key)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "at sequence 10: the signature does not verify" in result.stdout


def test_checkpoints_of_several_tenants_are_refused(chain, other_tenant, tmp_path, key):
    chained_events_create(tenant_id=other_tenant.id, count=1)
    mine, theirs = sorted(checkpoints_sign(), key=lambda c: c.tenant_id != chain.id)
    export = tmp_path / "events.jsonl"
    _write_export(export, chain)

    result = _run(
        export,
        "--checkpoint",
        _checkpoint_file(tmp_path / "mine.json", mine),
        "--checkpoint",
        _checkpoint_file(tmp_path / "theirs.json", theirs),
        "--public-key",
        key,
    )

    assert result.returncode == 2
    assert "the checkpoints are of several tenants" in result.stderr


@pytest.fixture
def globex_page(chain, other_tenant, key_client, tmp_path) -> Path:
    """QA's mix-up: tenant globex's checkpoints (one, at its sequence 2, which acme's export
    of 10 events also holds), saved from the API as the docs say."""
    chained_events_create(tenant_id=other_tenant.id, count=2)
    checkpoints_sign()
    page = _checkpoint_page(
        key_client, tmp_path / "globex-checkpoints.json", for_tenant=other_tenant
    )
    assert [(c["tenant"], c["sequence"]) for c in json.loads(page.read_text())["results"]] == [
        ("globex", 2)
    ]
    return page


@pytest.mark.parametrize("named", [[], ["--tenant", "acme"]], ids=["its-only-tenant", "--tenant"])
def test_checkpoints_of_another_tenant_are_refused_as_a_mix_up_not_as_tampering(
    chain, globex_page, tmp_path, key, named
):
    export = tmp_path / "acme-events.jsonl"
    _write_export(export, chain)

    result = _run(export, "--checkpoint", globex_page, "--public-key", key, *named)

    assert result.returncode == 2, result.stdout + result.stderr
    against = "not of tenant acme (--tenant)" if named else "this export is of tenant acme"
    assert result.stderr.splitlines()[-1] == (
        f"verify_export.py: error: these checkpoints are of tenant globex, {against}: give "
        "tenant acme's checkpoints"
    )
    assert result.stdout == ""


def test_checkpoints_saved_without_their_tenant_are_checked_as_before(
    chain, globex_page, tmp_path, key
):
    """A page saved before the API named the tenant: only the hashes can tell, and they
    differ (the tenant is not hashed, and tenant_id is signed but not in the export)."""
    data = json.loads(globex_page.read_text())
    for checkpoint in data["results"]:
        del checkpoint["tenant"]
    globex_page.write_text(json.dumps(data))
    export = tmp_path / "acme-events.jsonl"
    _write_export(export, chain)

    result = _run(export, "--checkpoint", globex_page, "--public-key", key)

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == (
        "NOT VERIFIED at line 9, sequence 2: the export differs from the signed checkpoint at "
        "sequence 2"
    )


def test_the_checkpoints_tenant_picks_nothing_but_is_named_for_an_export_of_several(
    chain, other_tenant, globex_page, tmp_path, key
):
    acme = _write_export(tmp_path / "acme.jsonl", chain, newest_first=False)
    globex = _write_export(tmp_path / "globex.jsonl", other_tenant, newest_first=False)
    export = _write_lines(tmp_path / "both.jsonl", acme + globex)

    unnamed = _run(export, "--checkpoint", globex_page, "--public-key", key)
    named = _run(export, "--checkpoint", globex_page, "--public-key", key, "--tenant", "globex")

    assert unnamed.returncode == 2, unnamed.stdout + unnamed.stderr
    assert unnamed.stderr.splitlines()[-1] == (
        "verify_export.py: error: the export holds several tenants: name the checkpoint's "
        "--tenant (the checkpoints are tenant globex's)"
    )
    assert named.returncode == 0, named.stdout + named.stderr
    assert "globex: 2 events verified" in named.stdout


def test_checkpoints_labelled_with_two_tenants_are_refused(chain, key_client, tmp_path, key):
    """The label is not signed: one edited to another tenant's slug is refused too."""
    checkpoints_sign()  # at 10
    chained_events_create(tenant_id=chain.id, count=2, start=10)
    checkpoints_sign()  # at 12
    page = _checkpoint_page(key_client, tmp_path / "checkpoints.json")
    data = json.loads(page.read_text())
    data["results"][0]["tenant"] = "globex"
    page.write_text(json.dumps(data))
    export = tmp_path / "events.jsonl"
    _write_export(export, chain)

    result = _run(export, "--checkpoint", page, "--public-key", key)

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines()[-1] == (
        "verify_export.py: error: the checkpoints are of several tenants (acme, globex): give "
        "one tenant's"
    )


def test_an_export_that_names_its_tenant_by_id_is_not_compared_with_the_label(
    chain, key_client, tmp_path, key
):
    """The flat shape with the column names carries tenant_id, not the slug: nothing to
    compare the label with, so the checkpoints are checked as before."""
    checkpoints_sign()
    page = _checkpoint_page(key_client, tmp_path / "checkpoints.json")
    documents = _write_export(tmp_path / "all.jsonl", chain)
    for document in documents:
        document["tenant_id"] = chain.id
        del document["tenant"]
    export = _write_lines(tmp_path / "flat.jsonl", documents)

    result = _run(export, "--checkpoint", page, "--public-key", key)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{chain.id}: 10 events verified" in result.stdout


def test_sequences_below_1_do_not_verify(tenant, tmp_path):
    tool = _tool_module()
    chained_events_create(tenant_id=tenant.id, count=1)
    [document] = _write_export(tmp_path / "one.jsonl", tenant)
    document.update(sequence=0, prev_hash="a" * 64)
    document["hash"] = tool.event_hash(document["prev_hash"], document)
    export = _write_lines(tmp_path / "zero.jsonl", [document])

    result = _run(export, "--allow-gaps")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT VERIFIED at line 1, sequence 0: tenant acme: sequences start at 1" in (
        result.stdout
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"signed_at": "yesterday"}, "checkpoint at sequence 10: the signature does not verify"),
        ({"sequence": "10"}, "a checkpoint's sequence is not an integer: '10'"),
        ({"tenant": 7}, "a checkpoint's tenant is not a string"),
    ],
)
def test_a_malformed_checkpoint_does_not_verify(chain, tmp_path, key, change, message):
    [checkpoint] = checkpoints_sign()
    export = tmp_path / "events.jsonl"
    _write_export(export, chain)
    malformed = _checkpoint_file(tmp_path / "c.json", checkpoint, **change)

    result = _run(export, "--checkpoint", malformed, "--public-key", key)

    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stdout
    assert "Traceback" not in result.stderr


# --- every given checkpoint --------------------------------------------------------------------


@pytest.fixture
def other_key(settings) -> Ed25519PrivateKey:
    """A second signing key (as of a signer elsewhere); the signer here knows both public
    keys, since it verifies the chain from the last checkpoint before it signs."""
    other = Ed25519PrivateKey.generate()
    settings.TRACELEDGER_SIGNING_RETIRED_KEYS = public_key_pem() + public_key_to_pem(
        other.public_key()
    )
    return other


def _sign_with(settings, key: Ed25519PrivateKey) -> None:
    """``checkpoints_sign`` with ``key`` instead of the data folder's."""
    default = settings.TRACELEDGER_SIGNING_KEY
    settings.TRACELEDGER_SIGNING_KEY = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    try:
        assert checkpoints_sign()
    finally:
        settings.TRACELEDGER_SIGNING_KEY = default


@pytest.mark.parametrize("sequence", [5, 12], ids=["older-within", "beyond"])
@pytest.mark.parametrize(
    "change",
    [{"hash": "e" * 64}, {"signed_at": "2026-01-01T00:00:00.000000Z"}],
    ids=["hash", "signed_at"],
)
def test_a_forged_checkpoint_anywhere_in_the_page_does_not_verify(
    tenant, exported_then_signed, key_client, tmp_path, key, sequence, change
):
    """Not only the checkpoint the export is matched against: an edited one is named, and an
    edited signed_at (before the events were received) is never taken as evidence."""
    page = _checkpoint_page(key_client, tmp_path / "checkpoints.json")
    data = json.loads(page.read_text())
    [forged] = [c for c in data["results"] if c["sequence"] == sequence]
    forged.update(change)
    page.write_text(json.dumps(data))

    result = _run(exported_then_signed, "--checkpoint", page, "--public-key", key)

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == (
        f"NOT VERIFIED at sequence {sequence}: checkpoint #{forged['id']} at sequence "
        f"{sequence}: the signature does not verify"
    )
    assert "rebuilt" not in result.stdout


@pytest.mark.parametrize("sequence", [5, 12], ids=["older-within", "beyond"])
def test_a_checkpoint_of_a_key_not_given_is_named_and_the_export_still_verifies(
    tenant, key_client, tmp_path, key, settings, other_key, sequence
):
    """Other than the one the export is matched against (at 10), which needs its key."""

    def sign(at: int) -> None:
        if at == sequence:
            _sign_with(settings, other_key)
        else:
            assert checkpoints_sign()

    chained_events_create(tenant_id=tenant.id, count=5)
    sign(5)
    chained_events_create(tenant_id=tenant.id, count=5, start=5)
    sign(10)
    export = tmp_path / "events.jsonl"
    _write_export(export, tenant)
    chained_events_create(tenant_id=tenant.id, count=2, start=10, action="audit_log.export")
    sign(12)
    page = _checkpoint_page(key_client, tmp_path / "checkpoints.json")
    ids = {c["sequence"]: c["id"] for c in json.loads(page.read_text())["results"]}
    other_id = key_id_of(other_key.public_key())

    result = _run(export, "--checkpoint", page, "--public-key", key)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"checkpoint #{ids[sequence]} at sequence {sequence} was signed by key {other_id[:16]}…, "
        "which is not among the given public keys; its signature was not checked, and it was "
        "not used"
    ) in result.stdout.splitlines()
    assert f"checkpoint #{ids[10]} at sequence 10: signature and hash verified" in result.stdout
    assert result.stdout.splitlines()[-1] == "verified"


def _rebuilt_export(path: Path, documents: list[dict], *, received_at: datetime) -> Path:
    """The export of a chain whose tail after ``documents`` was deleted and the head rewound
    to it: the next event to arrive, received at ``received_at``, is chained in its place
    with valid hashes (newest first, as the API lists it)."""
    tool = _tool_module()
    rebuilt = {
        **documents[-1],
        "id": str(uuid.uuid4()),
        "event_id": f"evt-{uuid.uuid4().hex}",
        "occurred_at": (received_at - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "received_at": received_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "description": "arrived after the cut",
        "sequence": documents[-1]["sequence"] + 1,
        "prev_hash": documents[-1]["hash"],
    }
    rebuilt["hash"] = tool.event_hash(rebuilt["prev_hash"], rebuilt)
    return _write_lines(path, [rebuilt, *reversed(documents)])


@pytest.fixture
def signed_at_5_and_10(tenant, tmp_path):
    """Sequences 1-10 with checkpoints at 5 and 10; returns the untouched documents (1-10)."""
    chained_events_create(tenant_id=tenant.id, count=5)
    checkpoints_sign()
    chained_events_create(tenant_id=tenant.id, count=5, start=5)
    checkpoints_sign()
    return _write_export(tmp_path / "untouched.jsonl", tenant, newest_first=False)


def _signed_at(page: Path, sequence: int) -> tuple[int, str, datetime]:
    [checkpoint] = [c for c in json.loads(page.read_text())["results"] if c["sequence"] == sequence]
    at = checkpoint["signed_at"]
    return checkpoint["id"], at, datetime.fromisoformat(at.replace("Z", "+00:00"))


def test_an_export_of_a_chain_cut_and_rebuilt_after_a_checkpoint_does_not_verify(
    tenant, signed_at_5_and_10, key_client, tmp_path, key
):
    """Events 7-10 deleted after the checkpoint at 10, the head rewound to 6, and a new event
    chained as 7: the chain links and the checkpoint at 5 matches, but the one at 10 was
    signed before sequence 7 was received."""
    page = _checkpoint_page(key_client, tmp_path / "checkpoints.json")
    cut, signed_text, signed = _signed_at(page, 10)
    received = signed + timedelta(seconds=133)
    export = _rebuilt_export(
        tmp_path / "events.jsonl", signed_at_5_and_10[:6], received_at=received
    )

    assert _run(export).returncode == 0  # the chain alone cannot tell
    result = _run(export, "--checkpoint", page, "--public-key", key)

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == (
        f"NOT VERIFIED at line 1, sequence 7: checkpoint #{cut}, signed at {signed_text}, "
        "vouches for sequence 10, but the export ends at sequence 7 and sequence 7 (line 1) was "
        f"received at {received.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}, 133 s after that signing "
        "(beyond the allowed clock skew of 60 s, --max-clock-skew): events after sequence 6 "
        "were removed and the chain rebuilt"
    )
    assert "signature and hash verified" not in result.stdout


def test_an_event_received_within_the_clock_skew_of_a_later_checkpoint_verifies(
    tenant, signed_at_5_and_10, key_client, tmp_path, key
):
    """The web and worker clocks may differ: 30 s is within the default 60 s, not within 10."""
    page = _checkpoint_page(key_client, tmp_path / "checkpoints.json")
    beyond, _, signed = _signed_at(page, 10)
    within, _, _ = _signed_at(page, 5)
    export = _rebuilt_export(
        tmp_path / "events.jsonl",
        signed_at_5_and_10[:6],
        received_at=signed + timedelta(seconds=30),
    )

    default = _run(export, "--checkpoint", page, "--public-key", key)
    strict = _run(export, "--checkpoint", page, "--public-key", key, "--max-clock-skew", "10")

    assert default.returncode == 0, default.stdout + default.stderr
    assert default.stdout.splitlines()[1:] == [
        f"checkpoint #{beyond} at sequence 10 is beyond this export; skipped (the export ends "
        "at sequence 7)",
        f"checkpoint #{within} at sequence 5: signature and hash verified",
        _after_newest("acme", 6, 7, f"checkpoint #{within} at sequence 5"),
        "verified",
    ]
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "30 s after that signing (beyond the allowed clock skew of 10 s" in strict.stdout


def test_a_filtered_export_of_a_rebuilt_chain_does_not_verify(
    tenant, signed_at_5_and_10, key_client, tmp_path, key
):
    page = _checkpoint_page(key_client, tmp_path / "checkpoints.json")
    cut, _, signed = _signed_at(page, 10)
    rebuilt = _rebuilt_export(
        tmp_path / "all.jsonl", signed_at_5_and_10[:6], received_at=signed + timedelta(hours=1)
    )
    lines = [json.loads(line) for line in rebuilt.read_text().splitlines()]
    export = _write_lines(tmp_path / "filtered.jsonl", [lines[0], *lines[2:]])  # 6 left out

    result = _run(export, "--checkpoint", page, "--public-key", key, "--allow-gaps")

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"NOT VERIFIED at line 1, sequence 7: checkpoint #{cut}, signed at" in result.stdout
    assert "3600 s after that signing" in result.stdout
    assert result.stdout.endswith("the chain was cut before sequence 7 and rebuilt\n")


def test_a_checkpoint_of_a_key_not_given_is_no_evidence_of_a_rebuilt_chain(
    tenant, key_client, tmp_path, key, settings, other_key
):
    """Only a checkpoint whose signature verified can prove the chain was rebuilt."""
    chained_events_create(tenant_id=tenant.id, count=5)
    checkpoints_sign()
    chained_events_create(tenant_id=tenant.id, count=5, start=5)
    _sign_with(settings, other_key)
    documents = _write_export(tmp_path / "all.jsonl", tenant, newest_first=False)
    page = _checkpoint_page(key_client, tmp_path / "checkpoints.json")
    cut, _, signed = _signed_at(page, 10)
    export = _rebuilt_export(
        tmp_path / "events.jsonl", documents[:6], received_at=signed + timedelta(hours=1)
    )
    both = tmp_path / "both.pub"
    both.write_text(key.read_text() + public_key_to_pem(other_key.public_key()))

    without = _run(export, "--checkpoint", page, "--public-key", key)
    with_key = _run(export, "--checkpoint", page, "--public-key", both)

    assert without.returncode == 0, without.stdout + without.stderr
    assert f"checkpoint #{cut} at sequence 10 was signed by key" in without.stdout
    assert with_key.returncode == 1, with_key.stdout + with_key.stderr
    assert "events after sequence 6 were removed and the chain rebuilt" in with_key.stdout
