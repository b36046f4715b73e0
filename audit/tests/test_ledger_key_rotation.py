"""Rotating the checkpoint signing key: what the old key signed keeps verifying."""

import os
import stat
import subprocess
import sys
from io import StringIO

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from audit.ledger import services
from audit.ledger.keyring import public_key_to_pem, public_keys_parse
from audit.ledger.services import checkpoints_sign
from audit.ledger.signing import (
    key_id,
    key_id_of,
    private_key_to_pem,
    public_key_pem,
    signing_key,
)
from audit.ledger.verify import ledger_verify
from audit.models import Checkpoint
from audit.tests.ledger_factories import chained_events_create
from audit.tests.test_ledger_offline_tool import _checkpoint_file, _run, _write_export

pytestmark = pytest.mark.django_db


def _private_pem(key: Ed25519PrivateKey) -> str:
    return private_key_to_pem(key).decode()


@pytest.fixture
def data_dir(settings, tmp_path):
    """A data folder of its own with a generated key (the setting empty), as `make run`."""
    settings.TRACELEDGER_SIGNING_KEY = ""
    settings.TRACELEDGER_SIGNING_RETIRED_KEYS = ""
    settings.DATA_DIR = tmp_path
    signing_key(create=True)
    return tmp_path


def _rotate(actor="ops-alice") -> str:
    out = StringIO()
    call_command("rotate_signing_key", "--actor", actor, stdout=out)
    return out.getvalue()


def test_checkpoints_of_the_old_key_verify_after_a_rotation(tenant, data_dir, submitted_events):
    chained_events_create(tenant_id=tenant.id, count=3)
    [old_checkpoint] = checkpoints_sign()
    old = key_id()

    shown = _rotate()

    new = key_id()  # no cache to clear: the process sees the new file at once
    assert new != old
    assert f"retired key_id: {old}" in shown and f"new key_id:     {new}" in shown
    assert stat.S_IMODE((data_dir / "ledger-signing-key.pem").stat().st_mode) == 0o600
    assert old in public_keys_parse((data_dir / "ledger-retired-keys.pem").read_text(), source="")
    # (The system tenant's own tenant.create comes first when this rotation made it.)
    [event] = [e for e in submitted_events if e["action"] == "ledger.key_rotate"]
    assert (event["action"], event["actor_id"], event["actor_name"]) == (
        "ledger.key_rotate",
        "ops-alice",
        "ops-alice",
    )
    assert event["metadata"] == {"retired_key_id": old, "key_id": new}

    chained_events_create(tenant_id=tenant.id, count=2, start=3)
    [new_checkpoint] = checkpoints_sign()
    assert (old_checkpoint.key_id, new_checkpoint.key_id) == (old, new)
    result = ledger_verify(tenant_id=tenant.id)
    assert (result.ok, result.checked, result.checkpoints_checked) == (True, 5, 2), result.reason


def test_without_the_retired_key_the_old_checkpoints_are_named(tenant, data_dir, submitted_events):
    chained_events_create(tenant_id=tenant.id, count=3)
    checkpoints_sign()
    _rotate()
    (data_dir / "ledger-retired-keys.pem").unlink()

    result = ledger_verify(tenant_id=tenant.id)

    assert (result.ok, result.first_bad_sequence) == (False, 3)
    assert "nor a retired one" in result.reason
    assert "TRACELEDGER_SIGNING_RETIRED_KEYS" in result.reason


def test_a_key_given_in_the_environment_is_rotated_there(tenant, settings, tmp_path):
    """The setting path: a new TRACELEDGER_SIGNING_KEY, the old public key in
    TRACELEDGER_SIGNING_RETIRED_KEYS; the command refuses to touch a configured key."""
    settings.DATA_DIR = tmp_path
    old_key, new_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    settings.TRACELEDGER_SIGNING_KEY = _private_pem(old_key)
    chained_events_create(tenant_id=tenant.id, count=2)
    checkpoints_sign()
    with pytest.raises(CommandError, match="rotate it there"):
        call_command("rotate_signing_key")

    settings.TRACELEDGER_SIGNING_KEY = _private_pem(new_key)
    assert not ledger_verify(tenant_id=tenant.id).ok
    settings.TRACELEDGER_SIGNING_RETIRED_KEYS = public_key_to_pem(old_key.public_key())
    assert ledger_verify(tenant_id=tenant.id).ok
    assert list(tmp_path.iterdir()) == []  # nothing written to the data folder


def test_signing_after_a_rotation_verifies_from_the_old_key_s_checkpoint(
    tenant, data_dir, submitted_events, monkeypatch
):
    """Not from genesis: a rotation must not make the next tick re-verify every chain."""
    chained_events_create(tenant_id=tenant.id, count=4)
    [checkpoint] = checkpoints_sign()
    _rotate()
    chained_events_create(tenant_id=tenant.id, count=1, start=4)
    starts = []
    verify = services.ledger_verify
    monkeypatch.setattr(
        services,
        "ledger_verify",
        lambda **kwargs: starts.append(kwargs["from_sequence"]) or verify(**kwargs),
    )

    assert checkpoints_sign()
    assert starts == [checkpoint.sequence]


def test_the_api_and_the_command_show_the_retired_keys(
    tenant, data_dir, submitted_events, key_client
):
    old_pem = public_key_pem()
    old = key_id()
    _rotate()

    body = key_client(scopes=["read"]).get("/api/v1/ledger/public-key").json()
    assert (body["key_id"], body["public_key"]) == (key_id(), public_key_pem())
    assert body["retired_keys"] == [{"key_id": old, "public_key": old_pem}]
    out, err = StringIO(), StringIO()
    call_command("ledger_public_key", "--retired", "--key-id", stdout=out, stderr=err)
    assert out.getvalue() == public_key_pem() + old_pem
    assert f"retired key_id: {old}" in err.getvalue()
    page = key_client(scopes=["read"]).get("/api/v1/ledger/checkpoints").json()
    assert page["retired_keys"] == body["retired_keys"]


def test_rotation_without_a_key_file_is_refused(settings, tmp_path):
    settings.TRACELEDGER_SIGNING_KEY = ""
    settings.DATA_DIR = tmp_path
    with pytest.raises(CommandError, match="no signing key to rotate"):
        call_command("rotate_signing_key")
    assert list(tmp_path.iterdir()) == []


def test_a_key_rotated_by_another_process_is_used_at_the_next_signature(tenant, data_dir):
    chained_events_create(tenant_id=tenant.id, count=1)
    before = key_id()
    replacement = Ed25519PrivateKey.generate()
    staged = data_dir / "staged.pem"
    staged.write_text(_private_pem(replacement))
    os.replace(staged, data_dir / "ledger-signing-key.pem")

    [checkpoint] = checkpoints_sign()

    assert checkpoint.key_id == key_id_of(replacement.public_key()) != before


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not a key", "not a PEM block"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not an Ed25519"),
        (None, "is a PRIVATE KEY, not a PUBLIC KEY"),
    ],
)
def test_retired_keys_that_are_not_public_ed25519_keys_are_refused(text, message):
    if text is None:
        text = _private_pem(Ed25519PrivateKey.generate())
    with pytest.raises(ImproperlyConfigured, match=message):
        public_keys_parse(text, source="X")


def test_a_bad_retired_keys_setting_stops_the_process_with_one_line():
    env = {**os.environ, "TRACELEDGER_SIGNING_RETIRED_KEYS": "garbage"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: TRACELEDGER_SIGNING_RETIRED_KEYS (or "
        "TRACELEDGER_SIGNING_RETIRED_KEYS_FILE) holds text that is not a PEM block"
    ]


def test_the_offline_tool_takes_the_retired_key_for_old_checkpoints(
    tenant, data_dir, submitted_events, tmp_path
):
    chained_events_create(tenant_id=tenant.id, count=3, target_id="", target_type="")
    [old_checkpoint] = checkpoints_sign()
    old_pem = public_key_pem()
    _rotate()
    export = tmp_path / "events.jsonl"
    _write_export(export, tenant)
    checkpoint = _checkpoint_file(tmp_path / "cp.json", old_checkpoint)
    current, both = tmp_path / "current.pem", tmp_path / "both.pem"
    current.write_text(public_key_pem())
    both.write_text(public_key_pem() + old_pem)

    refused = _run(export, "--checkpoint", checkpoint, "--public-key", current)
    verified = _run(export, "--checkpoint", checkpoint, "--public-key", both)
    repeated = _run(
        export, "--checkpoint", checkpoint, "--public-key", current, "--public-key", both
    )

    assert refused.returncode == 1
    assert f"signed by key {old_checkpoint.key_id[:16]}…, which is not among" in refused.stdout
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "signature and hash verified" in verified.stdout
    assert repeated.returncode == 0
    assert Checkpoint.objects.count() == 1


def test_the_offline_tool_takes_the_public_key_endpoints_answer_as_saved(
    tenant, data_dir, submitted_events, tmp_path, key_client
):
    """An API-only verifier saves GET /ledger/public-key (JSON, retired keys included)."""
    chained_events_create(tenant_id=tenant.id, count=3, target_id="", target_type="")
    [old_checkpoint] = checkpoints_sign()
    _rotate()
    export = tmp_path / "events.jsonl"
    _write_export(export, tenant)
    saved = tmp_path / "public-key.json"
    saved.write_bytes(key_client(scopes=["read"]).get("/api/v1/ledger/public-key").content)

    result = _run(
        export,
        "--checkpoint",
        _checkpoint_file(tmp_path / "cp.json", old_checkpoint),
        "--public-key",
        saved,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "signature and hash verified" in result.stdout


def test_with_the_database_away_nothing_is_rotated(data_dir, settings):
    """The rotation is recorded in the system trail: with PostgreSQL away the command says
    so (exit 2) and leaves the key alone, so that running it again rotates only once."""
    key_file = data_dir / "ledger-signing-key.pem"
    before = key_file.read_bytes()
    env = {
        **os.environ,
        "DATABASE_URL": "postgres://127.0.0.1:1/traceledger",
        "TRACELEDGER_DATA_DIR": str(data_dir),
        "TRACELEDGER_SIGNING_KEY": "",
    }

    result = subprocess.run(
        [sys.executable, "manage.py", "rotate_signing_key", "--actor", "ops-alice"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("database unavailable:")
    assert key_file.read_bytes() == before
    assert not (data_dir / "ledger-retired-keys.pem").exists()
