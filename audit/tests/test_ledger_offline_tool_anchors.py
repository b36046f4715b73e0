"""tools/verify_export.py --allow-gaps: which events of a filtered export are anchored
(docs/ledger.md §7).

An event between two gaps is consistent only with itself: edited, with its hash recomputed,
it hashes right and links to nothing in the file. Only a stretch of consecutive sequences
that reaches the chain's start or a verified checkpoint is tamper-evident, so a file with
any other event is not reported as verified (exit 3).
"""

import json
from pathlib import Path

import pytest

from audit.ledger.services import checkpoint_create, checkpoints_sign
from audit.tests.ledger_factories import chained_events_create
from audit.tests.test_ledger_offline_tool import (
    _after_newest,
    _checkpoint_file,
    _run,
    _tool_module,
    _write_export,
)

pytestmark = pytest.mark.django_db
NOT_FULLY_VERIFIED = 3


@pytest.fixture
def key(ledger_public_key_file) -> Path:
    return ledger_public_key_file


@pytest.fixture
def documents(tenant, tmp_path) -> list[dict]:
    """Sequences 1-10 of tenant acme, oldest first, as the export writes them."""
    chained_events_create(tenant_id=tenant.id, count=10)
    return _write_export(tmp_path / "all.jsonl", tenant, newest_first=False)


def _filtered(path: Path, documents: list[dict], sequences: set[int]) -> Path:
    kept = [d for d in documents if d["sequence"] in sequences]
    path.write_text("".join(json.dumps(d) + "\n" for d in kept))
    return path


def _forge(document: dict) -> None:
    """QA's edit: outcome, actor and description changed, the hash recomputed with the tool's
    own event_hash over the edited content and the event's prev_hash."""
    document.update(outcome="failure", description="nothing to see here")
    document["actor"] = {**document["actor"], "id": "user-mallory", "name": "Mallory"}
    document["hash"] = _tool_module().event_hash(document["prev_hash"], document)


def test_it_does_not_verify_an_edited_event_that_nothing_anchors(documents, tmp_path):
    """QA's case: a filtered export that starts late, and an event with no exported neighbour
    and no checkpoint at its sequence, edited and rehashed."""
    _forge(documents[5])  # sequence 6
    export = _filtered(tmp_path / "filtered.jsonl", documents, {4, 6, 8, 9})

    result = _run(export, "--allow-gaps")

    assert result.returncode == NOT_FULLY_VERIFIED, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("acme: 4 events, with gaps (--allow-gaps): each one's hash and ")
    assert "the chain was only verified from sequence 4 on" in lines[0]
    # A filtered export and a deletion look alike: the missing sequences are named.
    assert lines[0].endswith("; 2 sequences missing between its first and last event, at 5, 7")
    assert lines[1].startswith("acme: 4 of 4 events not anchored, at sequences 4, 6, 8-9: ")
    assert "verified" not in lines
    assert lines[-1] == (
        "NOT FULLY VERIFIED (acme: 4 of 4 events not anchored; acme: only from sequence 4)"
    )


def test_the_chain_start_anchors_nothing_an_edit_at_sequence_2_is_not_verified(
    tenant, documents, tmp_path, key
):
    """A code review's case: the genesis hash fixes sequence 1's prev_hash only. Events 1 and
    2 edited and rehashed in the stretch 1-2, which no later exported event links to, pass
    every check; a checkpoint at 12 anchors only its own stretch 11-12."""
    chained_events_create(tenant_id=tenant.id, count=2, start=10)
    [checkpoint] = checkpoints_sign()  # at sequence 12
    documents = _write_export(tmp_path / "all.jsonl", tenant, newest_first=False)
    _forge(documents[0])
    documents[1]["prev_hash"] = documents[0]["hash"]
    _forge(documents[1])
    export = _filtered(tmp_path / "filtered.jsonl", documents, {1, 2, 11, 12})
    page = _checkpoint_file(tmp_path / "checkpoint.json", checkpoint)

    result = _run(export, "--allow-gaps", "--checkpoint", page, "--public-key", key)

    assert result.returncode == NOT_FULLY_VERIFIED, result.stdout + result.stderr
    assert "acme: 2 of 4 events not anchored, at sequences 1-2: " in result.stdout
    assert result.stdout.splitlines()[-1] == "NOT FULLY VERIFIED (acme: 2 of 4 events not anchored)"


def test_a_verified_checkpoint_anchors_the_events_up_to_it_and_catches_the_edit(
    tenant, documents, tmp_path, key
):
    [checkpoint] = checkpoints_sign()  # at sequence 10
    page = _checkpoint_file(tmp_path / "checkpoint.json", checkpoint)
    sequences = {1, 2, 5, 8, 9, 10}
    honest = _filtered(tmp_path / "honest.jsonl", documents, sequences)
    _forge(documents[8])  # sequence 9, linked to 10, which the checkpoint vouches for
    forged = _filtered(tmp_path / "forged.jsonl", documents, sequences)

    anchored = _run(honest, "--allow-gaps", "--checkpoint", page, "--public-key", key)
    caught = _run(forged, "--allow-gaps", "--checkpoint", page, "--public-key", key)

    assert anchored.returncode == NOT_FULLY_VERIFIED, anchored.stdout + anchored.stderr
    assert "acme: 3 of 6 events not anchored, at sequences 1-2, 5: " in anchored.stdout
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert "NOT VERIFIED at line 6, sequence 10: prev_hash does not link" in caught.stdout


def test_events_after_the_last_checkpoint_of_their_stretch_are_not_anchored(
    tenant, documents, tmp_path, key
):
    """A code review's second case: a checkpoint at 5 inside the stretch 1-7 anchors 1-5;
    6 and 7 could be edited and rehashed unnoticed."""
    checkpoint = checkpoint_create(
        tenant_id=tenant.id, sequence=5, hash=documents[4]["hash"], kind="periodic"
    )
    chained_events_create(tenant_id=tenant.id, count=2, start=10)
    documents = _write_export(tmp_path / "all.jsonl", tenant, newest_first=False)
    export = _filtered(tmp_path / "filtered.jsonl", documents, {1, 2, 3, 4, 5, 6, 7, 10})
    page = _checkpoint_file(tmp_path / "checkpoint.json", checkpoint)

    result = _run(export, "--allow-gaps", "--checkpoint", page, "--public-key", key)

    assert result.returncode == NOT_FULLY_VERIFIED, result.stdout + result.stderr
    assert "acme: 3 of 8 events not anchored, at sequences 6-7, 10: " in result.stdout
    # Counted among the events not anchored: not named a second time as after the checkpoint.
    assert "after the newest checkpoint" not in result.stdout


def test_a_filtered_export_whose_every_event_is_anchored_verifies(tenant, documents, tmp_path, key):
    checkpoints_sign()  # at sequence 10
    chained_events_create(tenant_id=tenant.id, count=2, start=10)
    [checkpoint] = checkpoints_sign()  # at sequence 12
    documents = _write_export(tmp_path / "all.jsonl", tenant, newest_first=False)
    export = _filtered(tmp_path / "filtered.jsonl", documents, {4, 5, 6, 11, 12})
    page = _checkpoint_file(tmp_path / "checkpoint.json", checkpoint)

    without = _run(export, "--allow-gaps")
    result = _run(export, "--allow-gaps", "--checkpoint", page, "--public-key", key)

    assert without.returncode == NOT_FULLY_VERIFIED, without.stdout + without.stderr
    # 4-6 are tied to nothing: the checkpoint at 12 vouches only for its own stretch.
    assert "acme: 3 of 5 events not anchored, at sequences 4-6: " in result.stdout
    assert result.returncode == NOT_FULLY_VERIFIED, result.stdout + result.stderr

    export = _filtered(tmp_path / "anchored.jsonl", documents, {8, 9, 10, 11, 12})
    anchored = _run(export, "--allow-gaps", "--checkpoint", page, "--public-key", key)

    assert anchored.returncode == 0, anchored.stdout + anchored.stderr
    assert anchored.stdout.splitlines()[-2:] == [
        "acme: all 5 events anchored (each linked, through consecutive exported sequences, to "
        "a later exported checkpoint whose signature and hash verified)",
        "verified (acme: only from sequence 8)",
    ]


def test_checkpoints_none_of_which_falls_within_a_filtered_export_leave_it_not_fully_verified(
    tenant, documents, tmp_path, key
):
    """QA: giving the checkpoint page for an old stretch made it "NOT VERIFIED" (exit 1, the
    tamper verdict) although nothing was wrong; its events are only not anchored."""
    chained_events_create(tenant_id=tenant.id, count=2, start=10)
    [checkpoint] = checkpoints_sign()  # at sequence 12
    documents = _write_export(tmp_path / "all.jsonl", tenant, newest_first=False)
    export = _filtered(tmp_path / "old.jsonl", documents, {3, 4, 6})
    page = _checkpoint_file(tmp_path / "checkpoint.json", checkpoint)

    result = _run(export, "--allow-gaps", "--checkpoint", page, "--public-key", key)

    assert result.returncode == NOT_FULLY_VERIFIED, result.stdout + result.stderr
    assert "none of the given checkpoints (1) falls within this export" in result.stdout
    assert "acme: 3 of 3 events not anchored" in result.stdout


def test_a_complete_export_after_a_late_start_is_anchored_by_a_checkpoint_within_it(
    documents, tmp_path, key
):
    [checkpoint] = checkpoints_sign()  # at sequence 10
    export = _filtered(tmp_path / "cut.jsonl", documents, set(range(4, 11)))
    page = _checkpoint_file(tmp_path / "checkpoint.json", checkpoint)

    result = _run(export, "--allow-gaps", "--checkpoint", page, "--public-key", key)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "verified (acme: only from sequence 4)"


def test_it_names_the_first_stretches_and_how_many_there_are(documents, tmp_path, capsys):
    export = _filtered(tmp_path / "sparse.jsonl", documents, {1, 3, 5, 6, 8, 10})
    tool = _tool_module()
    tool.UNANCHORED_SHOWN = 2  # a sparse export of a large chain holds thousands of them

    status = tool.main([str(export), "--allow-gaps"])

    assert status == NOT_FULLY_VERIFIED
    assert "acme: 6 of 6 events not anchored, at sequences 1, 3, … (5 stretches): " in (
        capsys.readouterr().out
    )


# --- a whole export: the events after the newest checkpoint within it --------------------------


@pytest.mark.parametrize("rewritten", [False, True], ids=["as-exported", "rewritten-from-12"])
def test_a_whole_export_names_the_events_after_the_newest_checkpoint_and_still_verifies(
    tenant, tmp_path, key, rewritten
):
    """QA's case: the newest checkpoint given at 9, the export up to 16. Like the newest
    events of any chain, 10-16 are only chained (so 12-16 rewritten with their hashes
    recomputed pass too): verified, exit 0, as documented, but the output says which events
    no signature covers."""
    chained_events_create(tenant_id=tenant.id, count=9)
    [checkpoint] = checkpoints_sign()
    chained_events_create(tenant_id=tenant.id, count=7, start=9)
    documents = _write_export(tmp_path / "all.jsonl", tenant, newest_first=False)
    if rewritten:
        _forge(documents[11])  # sequence 12
        prev = documents[11]["hash"]
        for document in documents[12:]:
            document["prev_hash"] = prev
            document["hash"] = prev = _tool_module().event_hash(prev, document)
    export = _filtered(tmp_path / "events.jsonl", documents, set(range(1, 17)))
    single = _checkpoint_file(tmp_path / "checkpoint.json", checkpoint, id=checkpoint.pk)

    result = _run(export, "--checkpoint", single, "--public-key", key)
    without = _run(export)

    assert result.returncode == 0, result.stdout + result.stderr
    label = f"checkpoint #{checkpoint.pk} at sequence 9"
    assert result.stdout.splitlines() == [
        "acme: 16 events verified",
        f"{label}: signature and hash verified",
        _after_newest("acme", 10, 16, label),
        "verified",
    ]
    # Without checkpoints nothing is anchored by a signature, as the docs say: no such line.
    assert without.stdout.splitlines() == ["acme: 16 events verified", "verified"]
