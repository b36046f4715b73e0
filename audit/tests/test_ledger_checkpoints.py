"""Signing keys, signed checkpoints, the periodic task (on a real worker) and the purge."""

import logging
import stat
import time
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command

from audit.ledger.services import (
    PurgeRefused,
    checkpoint_create,
    checkpoints_sign,
    events_purge,
)
from audit.ledger.signing import (
    checkpoint_signature_valid,
    key_id,
    public_key,
    public_key_pem,
)
from audit.ledger.verify import ledger_verify
from audit.models import AuditEvent, Checkpoint
from audit.models.ledger import CheckpointKind
from audit.tests.ledger_factories import chained_events_create, ledger_guards_off

pytestmark = pytest.mark.django_db


def _received(day: int) -> dict:
    at = datetime(2026, 1, day, 12, tzinfo=UTC)
    return {"occurred_at": at, "received_at": at}


def checkpoint_key_pem_after_signing() -> str:
    from audit.ledger.signing import checkpoint_sign

    checkpoint_sign(
        tenant_id=1,
        sequence=1,
        hash="0" * 64,
        signed_at=datetime.now(UTC),
        kind="periodic",
        details={},
    )
    return public_key_pem()


def test_a_key_is_generated_by_the_first_signing_readable_only_by_its_owner(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    settings.TRACELEDGER_SIGNING_KEY = ""

    first = checkpoint_key_pem_after_signing()

    key_file = tmp_path / "ledger-signing-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert public_key_pem() == first  # reused, not regenerated


def test_the_configured_key_wins_and_names_the_key_id(settings, tmp_path):
    private = Ed25519PrivateKey.generate()
    settings.DATA_DIR = tmp_path
    settings.TRACELEDGER_SIGNING_KEY = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()

    expected = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert (
        public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        == expected
    )
    assert not (tmp_path / "ledger-signing-key.pem").exists()
    assert len(key_id()) == 64


def test_a_checkpoint_verifies_with_the_public_key_and_fails_for_a_changed_hash(tenant):
    [event] = chained_events_create(tenant_id=tenant.id, count=1)
    checkpoint = checkpoint_create(
        tenant_id=tenant.id, sequence=1, hash=event.hash, kind=CheckpointKind.PERIODIC
    )
    checkpoint.refresh_from_db()  # what is read back is what must verify

    assert checkpoint_signature_valid(checkpoint)
    checkpoint.hash = "f" * 64
    assert not checkpoint_signature_valid(checkpoint)
    checkpoint.refresh_from_db()
    assert not checkpoint_signature_valid(checkpoint, key=Ed25519PrivateKey.generate().public_key())


def test_it_signs_only_the_tenants_whose_head_moved(tenant, other_tenant):
    chained_events_create(tenant_id=tenant.id, count=3)
    assert [(c.tenant_id, c.sequence) for c in checkpoints_sign()] == [(tenant.id, 3)]
    assert checkpoints_sign() == []

    chained_events_create(tenant_id=other_tenant.id, count=2)
    chained_events_create(tenant_id=tenant.id, count=1, start=3)
    signed = {(c.tenant_id, c.sequence) for c in checkpoints_sign()}
    assert signed == {(tenant.id, 4), (other_tenant.id, 2)}


@pytest.mark.integration
def test_the_periodic_task_signs_checkpoints_on_a_real_worker(tenant, celery_worker_process):
    from audit.tasks_ledger import sign_checkpoints

    chained_events_create(tenant_id=tenant.id, count=2)
    sign_checkpoints.apply_async()

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not Checkpoint.objects.filter(tenant=tenant).exists():
        time.sleep(0.2)
    checkpoint = Checkpoint.objects.get(tenant=tenant)
    assert (checkpoint.sequence, checkpoint_signature_valid(checkpoint)) == (2, True)


def test_the_periodic_job_is_scheduled_on_the_maintenance_queue(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["ledger-sign-checkpoints"]
    assert entry["task"] == "audit.ledger.sign_checkpoints"
    assert entry["options"]["queue"] == "maintenance"


def test_purge_removes_the_old_prefix_and_verification_resumes_after_it(tenant):
    for day in (1, 2, 3):
        chained_events_create(tenant_id=tenant.id, count=2, start=day * 10, **_received(day))
    chained_events_create(tenant_id=tenant.id, count=2, start=90, **_received(9))
    # A late arrival with an old timestamp sits after newer events: it is kept, with them.
    chained_events_create(tenant_id=tenant.id, count=1, start=95, **_received(1))

    result = events_purge(tenant_id=tenant.id, before=datetime(2026, 1, 3, tzinfo=UTC))

    assert (result.removed, result.from_sequence, result.through_sequence) == (4, 1, 4)
    assert sorted(AuditEvent.objects.filter(tenant=tenant).values_list("sequence", flat=True)) == [
        5,
        6,
        7,
        8,
        9,
    ]
    checkpoint = result.checkpoint
    assert checkpoint.kind == CheckpointKind.PURGE
    assert checkpoint.details["removed"] == 4
    assert checkpoint.details["resumes_at_sequence"] == 5
    assert checkpoint_signature_valid(checkpoint)
    verification = ledger_verify(tenant_id=tenant.id)
    assert (verification.ok, verification.checked, verification.from_sequence) == (True, 5, 5)


def test_a_second_purge_continues_from_the_first(tenant):
    for day in (1, 2, 3):
        chained_events_create(tenant_id=tenant.id, count=2, start=day * 10, **_received(day))

    events_purge(tenant_id=tenant.id, before=datetime(2026, 1, 2, tzinfo=UTC))
    second = events_purge(tenant_id=tenant.id, before=datetime(2026, 1, 3, tzinfo=UTC))
    nothing = events_purge(tenant_id=tenant.id, before=datetime(2026, 1, 3, tzinfo=UTC))

    assert (second.removed, second.from_sequence, second.through_sequence) == (2, 3, 4)
    assert nothing.removed == 0
    assert ledger_verify(tenant_id=tenant.id).ok


def test_verification_fails_when_a_purge_checkpoint_is_forged(tenant):
    chained_events_create(tenant_id=tenant.id, count=4, **_received(1))
    chained_events_create(tenant_id=tenant.id, count=2, start=4, **_received(5))
    result = events_purge(tenant_id=tenant.id, before=datetime(2026, 1, 2, tzinfo=UTC))
    with ledger_guards_off():
        Checkpoint.objects.filter(pk=result.checkpoint.pk).update(sequence=3)

    verification = ledger_verify(tenant_id=tenant.id)

    assert not verification.ok
    assert "signature" in verification.reason


def test_purge_refuses_a_chain_that_does_not_verify(tenant):
    from audit.tests.test_ledger_verify import _tamper

    chained_events_create(tenant_id=tenant.id, count=3, **_received(1))
    _tamper(
        "UPDATE audit_auditevent SET action = 'x' WHERE tenant_id = %s AND sequence = 2",
        [tenant.id],
    )

    with pytest.raises(PurgeRefused, match="does not verify at sequence 2"):
        events_purge(tenant_id=tenant.id, before=datetime(2026, 2, 1, tzinfo=UTC))
    assert AuditEvent.objects.filter(tenant=tenant).count() == 3


def test_the_purge_command_reports_what_it_removed(tenant):
    chained_events_create(tenant_id=tenant.id, count=3, **_received(1))
    chained_events_create(tenant_id=tenant.id, count=1, start=3, **_received(5))
    out = StringIO()

    call_command(
        "purge_events", "--before", "2026-01-02", "--tenant", tenant.slug, "--yes", stdout=out
    )

    assert "removed 3 events (sequences 1..3); verification resumes at 4" in out.getvalue()
    assert Checkpoint.objects.get(tenant=tenant).kind == CheckpointKind.PURGE


def test_the_purge_command_asks_and_off_a_terminal_needs_yes(tenant, monkeypatch):
    chained_events_create(tenant_id=tenant.id, count=3, **_received(1))
    args = ("purge_events", "--before", "2026-01-02", "--tenant", tenant.slug)

    with pytest.raises(CommandError, match=r"Remove 3 events .*Run with --yes"):
        call_command(*args)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", lambda question: "n")
    with pytest.raises(CommandError, match="nothing was purged"):
        call_command(*args)
    assert AuditEvent.objects.filter(tenant=tenant).count() == 3

    monkeypatch.setattr("builtins.input", lambda question: "y")
    call_command(*args, stdout=StringIO())
    assert AuditEvent.objects.filter(tenant=tenant).count() == 0


def test_a_purge_with_a_cutoff_in_the_future_is_refused(tenant):
    chained_events_create(tenant_id=tenant.id, count=2)
    with pytest.raises(PurgeRefused, match="in the future"):
        events_purge(tenant_id=tenant.id, before=datetime.now(UTC) + timedelta(minutes=1))
    assert AuditEvent.objects.filter(tenant=tenant).count() == 2


def test_a_purge_is_recorded_in_the_tenants_trail_with_its_actor(
    tenant, django_capture_on_commit_callbacks
):
    from audit.models import OutboxMessage

    chained_events_create(tenant_id=tenant.id, count=3, **_received(1))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = events_purge(tenant_id=tenant.id, before=datetime(2026, 1, 2, tzinfo=UTC))

    # Written in the purge's own transaction (it commits with the purge, and stays for the
    # relay if the process dies before publishing it)...
    [row] = OutboxMessage.objects.all()
    [event] = row.payload["events"]
    assert (event["action"], event["actor_id"], row.tenant_id) == (
        "ledger.purge",
        "manage.py",
        tenant.id,
    )
    assert event["metadata"]["removed"] == 3
    assert event["metadata"]["checkpoint_id"] == result.checkpoint.pk
    assert "removed 3 events (sequences 1..3)" in event["description"]
    # ...and published, then deleted, once it has committed.
    for callback in callbacks:
        callback()
    assert not OutboxMessage.objects.exists()


def test_the_purge_command_records_the_actor_given_or_the_login_name(
    tenant, submitted_events, monkeypatch, django_capture_on_commit_callbacks
):
    chained_events_create(tenant_id=tenant.id, count=2, **_received(1))
    chained_events_create(tenant_id=tenant.id, count=2, start=2, **_received(3))
    monkeypatch.setattr("getpass.getuser", lambda: "carol")
    args = ("purge_events", "--tenant", tenant.slug, "--yes")

    with django_capture_on_commit_callbacks(execute=True):
        call_command(*args, "--before", "2026-01-02", "--actor", "ops-alice", stdout=StringIO())
    with django_capture_on_commit_callbacks(execute=True):
        call_command(*args, "--before", "2026-01-04", stdout=StringIO())

    assert [(e["action"], e["actor_id"], e["actor_type"]) for e in submitted_events] == [
        ("ledger.purge", "ops-alice", "user"),
        ("ledger.purge", "cli:carol", "user"),  # as rotate_signing_key and replay_dead_letters
    ]


def test_the_purge_command_refuses_an_actor_no_event_can_carry_and_purges_nothing(
    tenant, submitted_events
):
    chained_events_create(tenant_id=tenant.id, count=2, **_received(1))

    for actor in ("x" * 257, "  "):
        with pytest.raises(CommandError, match="--actor: must be 1 to 256 characters"):
            call_command(
                "purge_events", "--before", "2026-01-02", "--tenant", tenant.slug, "--yes",
                "--actor", actor,
            )  # fmt: skip

    assert AuditEvent.objects.filter(tenant=tenant).count() == 2
    assert submitted_events == []


def test_every_recorded_command_offers_the_same_actor_option():
    from django.core.management import load_command_class

    for name in ("purge_events", "rotate_signing_key", "replay_dead_letters"):
        text = load_command_class("audit", name).create_parser("manage.py", name).format_help()
        assert "--actor NAME" in text and "(default: cli:<login name>)" in " ".join(text.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--before", "yesterday", "--tenant", "acme"], "not an ISO 8601"),
        (["--before", "2026-01-01T00:00:00", "--tenant", "acme"], "UTC offset"),
        (["--before", "2026-01-01", "--tenant", "nope"], "no tenant"),
    ],
)
def test_the_purge_command_rejects_bad_input(tenant, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("purge_events", *args)


def test_verify_ledger_exits_0_when_every_chain_verifies(tenant, other_tenant):
    chained_events_create(tenant_id=tenant.id, count=3)
    chained_events_create(tenant_id=other_tenant.id, count=1)
    out = StringIO()

    call_command("verify_ledger", stdout=out)

    assert "acme: ok, 3 events" in out.getvalue()
    assert "2 chains verified" in out.getvalue()


def test_verify_ledger_exits_1_naming_the_first_broken_sequence(tenant):
    from audit.tests.test_ledger_verify import _tamper

    chained_events_create(tenant_id=tenant.id, count=3)
    _tamper("DELETE FROM audit_auditevent WHERE tenant_id = %s AND sequence = 2", [tenant.id])
    out = StringIO()

    with pytest.raises(SystemExit) as exit_info:
        call_command("verify_ledger", "--tenant", "acme", stdout=out, stderr=StringIO())

    assert exit_info.value.code == 1
    assert "acme: BROKEN at sequence 2" in out.getvalue()
    assert "(1 event verified before it)" in out.getvalue()


def test_an_event_stored_again_below_a_purge_is_named_without_calling_the_walk_before_it(
    tenant,
):
    """The walk starts above the purge checkpoint; "6 events verified before it" of a break
    at sequence 1 read as if events 1-6 had verified."""
    for day in (1, 2, 3):
        at = datetime(2026, 1, day, 12, tzinfo=UTC)
        chained_events_create(
            tenant_id=tenant.id, count=3, start=day * 10, occurred_at=at, received_at=at
        )
    [first] = AuditEvent.objects.filter(tenant=tenant, sequence=1).values()
    events_purge(tenant_id=tenant.id, before=datetime(2026, 1, 2, tzinfo=UTC))
    AuditEvent.objects.create(**first)  # INSERT: the append-only trigger allows it
    out = StringIO()

    with pytest.raises(SystemExit):
        call_command("verify_ledger", "--tenant", "acme", stdout=out, stderr=StringIO())

    assert (
        "acme: BROKEN at sequence 1: an event exists before the purge checkpoint's position "
        "(6 events from sequence 4 verified)"
    ) in out.getvalue()


@pytest.mark.parametrize(
    ("broken", "args", "summary"),
    [
        (["acme"], ["--tenant", "acme"], "1 of 1 chain does not verify"),
        (["acme"], [], "1 of 2 chains does not verify"),
        (["acme", "globex"], [], "2 of 2 chains do not verify"),
    ],
)
def test_verify_ledger_counts_the_broken_chains_in_plain_english(
    tenant, other_tenant, broken, args, summary
):
    from audit.tests.test_ledger_verify import _tamper

    for each in (tenant, other_tenant):
        chained_events_create(tenant_id=each.id, count=3)
        if each.slug in broken:
            _tamper("DELETE FROM audit_auditevent WHERE tenant_id = %s AND sequence = 2", [each.id])
    err = StringIO()

    with pytest.raises(SystemExit):
        call_command("verify_ledger", *args, stdout=StringIO(), stderr=err)

    assert err.getvalue().strip() == summary


def test_verify_ledger_does_not_count_events_before_a_bad_signature(tenant):
    # Signatures are checked before any event, so "0 events verified before it" misled.
    chained_events_create(tenant_id=tenant.id, count=3)
    checkpoints_sign()
    with ledger_guards_off():
        Checkpoint.objects.filter(tenant_id=tenant.id).update(signature="00" * 64)
    out = StringIO()

    with pytest.raises(SystemExit):
        call_command("verify_ledger", "--tenant", "acme", stdout=out, stderr=StringIO())

    assert "acme: BROKEN at sequence 3" in out.getvalue()
    assert "verified before it" not in out.getvalue()


def test_verify_ledger_rejects_an_unknown_tenant_with_exit_2(db):
    with pytest.raises(CommandError, match="no tenant with slug 'nope'") as raised:
        call_command("verify_ledger", "--tenant", "nope")
    assert raised.value.returncode == 2


@pytest.fixture
def elsewhere(settings, tmp_path):
    """elsewhere() → from then on, this process looks for the signing key and the public key
    where there is neither (as a command run with another TRACELEDGER_DATA_DIR); returns that
    folder."""
    from audit.ledger.signing import _private_key

    def move():
        settings.TRACELEDGER_SIGNING_KEY = ""
        settings.TRACELEDGER_SIGNING_PUBLIC_KEY = ""
        settings.DATA_DIR = tmp_path
        _private_key.cache_clear()
        return tmp_path

    yield move
    _private_key.cache_clear()


def test_verify_ledger_without_the_signing_key_says_so_and_makes_none(tenant, elsewhere):
    chained_events_create(tenant_id=tenant.id, count=2)
    assert checkpoints_sign()  # with the deployment's key
    folder = elsewhere()

    with pytest.raises(CommandError, match="public key is not available") as raised:
        call_command("verify_ledger", "--tenant", "acme", stdout=StringIO())

    assert raised.value.returncode == 2
    assert list(folder.iterdir()) == []  # no stray private key left behind


def test_ledger_public_key_without_the_signing_key_fails_and_makes_none(elsewhere):
    folder = elsewhere()
    with pytest.raises(CommandError, match="public key is not available"):
        call_command("ledger_public_key")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("path", ["/api/v1/ledger/public-key", "/api/v1/ledger/checkpoints"])
def test_the_ledger_api_without_the_signing_key_is_a_503_naming_no_path(
    key_client, elsewhere, path, caplog
):
    folder = elsewhere()
    response = key_client(scopes=["read"]).get(path)
    assert response.status_code == 503
    assert response["Retry-After"]
    message = response.json()["error"]["message"]
    assert "public key is not available" in message
    # Where the server keeps its key, and its settings, are for the log, not for clients.
    assert str(folder) not in message and "TRACELEDGER_" not in message
    assert str(folder) in caplog.text


def test_the_signer_makes_its_key_even_with_nothing_to_sign(db, elsewhere, key_client):
    """make run signs once at start, so the public key is served from the first minute."""
    folder = elsewhere()
    assert checkpoints_sign() == []
    assert sorted(path.name for path in folder.iterdir()) == [
        "ledger-public-key.pem",
        "ledger-signing-key.pem",
    ]
    assert key_client(scopes=["read"]).get("/api/v1/ledger/public-key").status_code == 200


def test_signing_makes_the_key_when_there_is_none(tenant, elsewhere):
    folder = elsewhere()
    chained_events_create(tenant_id=tenant.id, count=1)
    assert checkpoints_sign()
    assert sorted(path.name for path in folder.iterdir()) == [
        "ledger-public-key.pem",
        "ledger-signing-key.pem",
    ]


def test_ledger_public_key_prints_the_pem():
    out = StringIO()
    call_command("ledger_public_key", stdout=out)
    assert out.getvalue() == public_key_pem()


def test_sign_checkpoints_command_signs_moved_heads(tenant):
    chained_events_create(tenant_id=tenant.id, count=2)
    out = StringIO()
    call_command("sign_checkpoints", stdout=out)
    assert "1 checkpoint signed" in out.getvalue()
    assert out.getvalue().startswith("acme: signed sequence 2 ")
    assert (
        timedelta(0)
        <= (datetime.now(UTC) - Checkpoint.objects.get().signed_at)
        < timedelta(minutes=1)
    )


def test_verify_ledger_shows_a_progress_bar_for_big_tenants(tenant, monkeypatch, capsys):
    monkeypatch.setattr("audit.management.commands.verify_ledger.PROGRESS_MIN_EVENTS", 5)
    chained_events_create(tenant_id=tenant.id, count=6)

    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    call_command("verify_ledger", stdout=StringIO())
    shown = capsys.readouterr().err
    call_command("verify_ledger", "--no-progress", stdout=StringIO())
    hidden = capsys.readouterr().err

    assert "acme: 100%" in shown and "6/6" in shown  # not tqdm's scaled "6.00/6.00"
    assert hidden == ""


def test_verify_ledgers_progress_bar_stops_where_the_break_is(tenant, monkeypatch, capsys):
    """It stayed at 0 % (the events checked since the last whole chunk were never counted)."""
    from audit.tests.test_ledger_verify import _tamper

    monkeypatch.setattr("audit.management.commands.verify_ledger.PROGRESS_MIN_EVENTS", 5)
    chained_events_create(tenant_id=tenant.id, count=6)
    _tamper("DELETE FROM audit_auditevent WHERE tenant_id = %s AND sequence = 4", [tenant.id])
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)

    with pytest.raises(SystemExit):
        call_command("verify_ledger", stdout=StringIO(), stderr=StringIO())

    last = capsys.readouterr().err.split("\r")[-1]
    assert last.startswith("acme:  50%") and " 3/6 " in last, last


@pytest.mark.django_db(transaction=True)
def test_a_second_signer_returns_at_once_while_one_is_running(tenant):
    """It does not wait for the lock: that would hold a worker process for as long as the
    first signer verifies."""
    import psycopg
    from django.db import connection

    from audit.ledger.services import CHECKPOINT_LOCK_KEY

    chained_events_create(tenant_id=tenant.id, count=2)
    with psycopg.connect(**connection.get_connection_params()) as other:
        other.execute("SELECT pg_advisory_xact_lock(%s)", [CHECKPOINT_LOCK_KEY])
        started = time.monotonic()
        assert checkpoints_sign() == []
        assert time.monotonic() - started < 2
    assert [c.sequence for c in checkpoints_sign()] == [2]


def test_the_periodic_task_skips_quietly_while_the_database_is_down(database_down, caplog):
    from audit.tasks_ledger import sign_checkpoints

    database_down()
    for _ in range(2):
        assert sign_checkpoints() == 0

    [line] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert line.name == "audit.tasks_ledger"
    assert line.exc_info is None
    message = line.getMessage()
    assert message.startswith(
        "ledger checkpoints not signed: database unavailable (OperationalError: "
    )
    assert message.endswith("); retrying on the next run") and "\n" not in message


def test_the_periodic_task_raises_an_error_that_is_not_an_outage(monkeypatch):
    from audit.tasks_ledger import sign_checkpoints

    def bug(**kwargs):
        raise ValueError("not a signing key")

    monkeypatch.setattr("audit.ledger.services.checkpoints_sign", bug)
    with pytest.raises(ValueError, match="not a signing key"):
        sign_checkpoints()
