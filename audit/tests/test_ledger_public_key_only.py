"""Verifying and showing the public key need the public key alone; only signing needs the
private one (docs/ledger.md §5, "Which process holds which key").

The signer's data folder holds the private key; the "web" here is the same test process
switched to another folder (or to TRACELEDGER_SIGNING_PUBLIC_KEY) that holds public material
only, as a web process deployed apart from the signer.
"""

import os
import shutil
import stat
import subprocess
import sys
from io import StringIO

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.urls import reverse

from audit.ledger.keyring import RETIRED_FILE_NAME, key_id_of, public_key_to_pem
from audit.ledger.services import checkpoints_sign
from audit.ledger.signing import (
    KEY_FILE_NAME,
    PUBLIC_KEY_FILE_NAME,
    SigningKeyMissing,
    SigningKeysMismatch,
    checkpoint_message,
    key_id,
    private_key_to_pem,
    public_key_pem,
    signing_key,
)
from audit.ledger.verify import ledger_verify
from audit.models import AuditEvent, Checkpoint
from audit.tests.ledger_factories import chained_events_create, ledger_guards_off
from traceledger.settings_guard import guard_public_key

pytestmark = pytest.mark.django_db

VERIFY = "/api/v1/ledger/verify"
CHECKPOINTS = "/api/v1/ledger/checkpoints"
PUBLIC_KEY = "/api/v1/ledger/public-key"


def _private_pem(key: Ed25519PrivateKey) -> str:
    return private_key_to_pem(key).decode()


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()


@pytest.fixture
def signer(settings, tmp_path):
    """signer() → this process is the signer, with its key in a data folder of its own (as
    `make run`); returns that folder."""
    folder = tmp_path / "signer"

    def become():
        settings.TRACELEDGER_SIGNING_KEY = ""
        settings.TRACELEDGER_SIGNING_PUBLIC_KEY = ""
        settings.TRACELEDGER_SIGNING_RETIRED_KEYS = ""
        settings.DATA_DIR = folder
        return folder

    become()
    signing_key(create=True)
    return become


@pytest.fixture
def web(settings, tmp_path):
    """web(how) → this process has public material only: ``"file"``, a data folder holding
    the signer's public key and a copy of its retired keys; ``"setting"``,
    TRACELEDGER_SIGNING_PUBLIC_KEY (and the retired keys in their setting) with an empty data
    folder. Returns that folder."""
    folder = tmp_path / "web"
    folder.mkdir()

    def become(how: str):
        pem = public_key_pem()  # the signer's, as `manage.py ledger_public_key` prints it
        retired = settings.DATA_DIR / RETIRED_FILE_NAME
        settings.TRACELEDGER_SIGNING_KEY = ""
        settings.DATA_DIR = folder
        if how == "file":
            settings.TRACELEDGER_SIGNING_PUBLIC_KEY = ""
            (folder / PUBLIC_KEY_FILE_NAME).write_text(pem)
            if retired.exists():
                shutil.copy(retired, folder / RETIRED_FILE_NAME)
        else:
            settings.TRACELEDGER_SIGNING_PUBLIC_KEY = pem
            settings.TRACELEDGER_SIGNING_RETIRED_KEYS = (
                retired.read_text() if retired.exists() else ""
            )
        return folder

    return become


@pytest.fixture
def signed_chain(tenant, signer):
    chained_events_create(tenant_id=tenant.id, count=3)
    [checkpoint] = checkpoints_sign()
    return checkpoint


def _names(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


# --- the signer keeps the public file -----------------------------------------------------


def test_the_signer_keeps_its_public_key_in_a_file_anyone_may_read(signer):
    folder = signer()
    public_file = folder / PUBLIC_KEY_FILE_NAME

    assert public_file.read_text() == public_key_pem()
    assert "PRIVATE" not in public_file.read_text()
    assert stat.S_IMODE(public_file.stat().st_mode) & 0o044 == 0o044
    assert stat.S_IMODE((folder / KEY_FILE_NAME).stat().st_mode) == 0o600


def test_a_key_made_before_the_public_file_existed_gets_one_at_the_next_signing(settings, tmp_path):
    """An upgraded install: its key file is there, the public file is not yet."""
    key = Ed25519PrivateKey.generate()
    (tmp_path / KEY_FILE_NAME).write_text(_private_pem(key))
    settings.DATA_DIR = tmp_path
    settings.TRACELEDGER_SIGNING_KEY = ""
    settings.TRACELEDGER_SIGNING_PUBLIC_KEY = ""

    checkpoints_sign()

    assert (tmp_path / PUBLIC_KEY_FILE_NAME).read_text() == public_key_to_pem(key.public_key())


def test_a_stale_public_file_is_rewritten_by_the_signer(tenant, signer):
    """A key file replaced by hand (or a rotation cut short between the two files)."""
    folder = signer()
    replacement = Ed25519PrivateKey.generate()
    staged = folder / "staged.pem"
    staged.write_text(_private_pem(replacement))
    os.replace(staged, folder / KEY_FILE_NAME)
    chained_events_create(tenant_id=tenant.id, count=1)

    [checkpoint] = checkpoints_sign()

    assert checkpoint.key_id == key_id_of(replacement.public_key())
    assert (folder / PUBLIC_KEY_FILE_NAME).read_text() == public_key_to_pem(
        replacement.public_key()
    )


def test_a_key_given_in_the_environment_writes_no_public_file(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    settings.TRACELEDGER_SIGNING_KEY = _private_pem(Ed25519PrivateKey.generate())
    settings.TRACELEDGER_SIGNING_PUBLIC_KEY = ""
    checkpoints_sign()
    assert list(tmp_path.iterdir()) == []


# --- verifying with the public key alone --------------------------------------------------


@pytest.mark.parametrize("how", ["file", "setting"])
def test_verify_ledger_checks_the_signed_checkpoints_with_the_public_key_alone(
    signed_chain, web, how
):
    folder = web(how)
    out = StringIO()

    call_command("verify_ledger", "--tenant", "acme", stdout=out)

    assert out.getvalue().splitlines()[0] == "acme: ok, 3 events, 1 checkpoint"
    assert KEY_FILE_NAME not in _names(folder)  # no private key made on the way


@pytest.mark.parametrize("how", ["file", "setting"])
def test_the_ledger_api_verifies_and_shows_the_key_with_the_public_key_alone(
    signed_chain, signer, web, key_client, how
):
    expected_pem, expected_id = public_key_pem(), key_id()
    folder = web(how)
    client = key_client(scopes=["read"])

    verified = client.get(VERIFY)
    page = client.get(CHECKPOINTS)
    shown = client.get(PUBLIC_KEY)

    assert verified.status_code == 200, verified.content
    body = verified.json()
    assert (body["ok"], body["checked"], body["checkpoints_checked"]) == (True, 3, 1)
    assert page.status_code == 200, page.content
    assert page.json()["results"][0]["id"] == signed_chain.pk
    assert (page.json()["key_id"], page.json()["public_key"]) == (expected_id, expected_pem)
    assert shown.status_code == 200, shown.content
    assert (shown.json()["key_id"], shown.json()["public_key"]) == (expected_id, expected_pem)
    assert KEY_FILE_NAME not in _names(folder)


@pytest.mark.parametrize("how", ["file", "setting"])
def test_ledger_public_key_prints_the_key_with_the_public_key_alone(signer, web, how):
    expected = public_key_pem()
    web(how)
    out = StringIO()
    call_command("ledger_public_key", stdout=out)
    assert out.getvalue() == expected


def test_a_checkpoint_signed_with_another_key_is_still_caught_with_the_public_key_alone(
    tenant, signed_chain, web
):
    """The point of the split: whoever holds the web process (and its public key) cannot
    sign a checkpoint the verifier accepts."""
    web("file")
    forged = Ed25519PrivateKey.generate().sign(
        checkpoint_message(
            tenant_id=tenant.id,
            sequence=signed_chain.sequence,
            hash=signed_chain.hash,
            signed_at=signed_chain.signed_at,
            kind=signed_chain.kind,
            details=signed_chain.details,
        )
    )
    with ledger_guards_off():
        Checkpoint.objects.filter(pk=signed_chain.pk).update(signature=forged.hex())

    result = ledger_verify(tenant_id=tenant.id)

    assert (result.ok, result.first_bad_sequence) == (False, 3)
    assert "invalid signature for its key" in result.reason


def test_a_public_only_process_follows_a_rotation_of_its_public_file(
    tenant, signed_chain, signer, web, submitted_events, settings
):
    """The public file changes as the key file does, and a process reading it picks the new
    key up the same way (inode, time, size), without a restart."""
    signer_folder = signer()
    old = key_id()
    call_command("rotate_signing_key", "--actor", "ops", stdout=StringIO())
    new = key_id()
    assert (signer_folder / PUBLIC_KEY_FILE_NAME).read_text() == public_key_pem()
    chained_events_create(tenant_id=tenant.id, count=2, start=3)
    [new_checkpoint] = checkpoints_sign()
    assert new_checkpoint.key_id == new != old

    web_folder = web("file")  # the public files, as a copy to the web's host makes them
    assert key_id() == new
    result = ledger_verify(tenant_id=tenant.id)
    assert (result.ok, result.checked, result.checkpoints_checked) == (True, 5, 2), result.reason

    # The next rotation reaches the web's folder as a replaced file: seen at the next call.
    signer()
    call_command("rotate_signing_key", "--actor", "ops", stdout=StringIO())
    newest = key_id()
    for name in (PUBLIC_KEY_FILE_NAME, RETIRED_FILE_NAME):
        staged = web_folder / f".{name}.sync"
        shutil.copy(signer_folder / name, staged)
        os.replace(staged, web_folder / name)
    settings.DATA_DIR = web_folder
    assert key_id() == newest != new
    assert not (web_folder / KEY_FILE_NAME).exists()


# --- a public key that is not the private key's ------------------------------------------


def test_a_configured_public_key_that_is_not_the_signing_key_s_is_refused(
    signed_chain, settings, key_client
):
    settings.TRACELEDGER_SIGNING_PUBLIC_KEY = public_key_to_pem(
        Ed25519PrivateKey.generate().public_key()
    )

    with pytest.raises(CommandError, match=r"is not the public key of .*ledger-signing") as exc:
        call_command("verify_ledger", "--tenant", "acme", stdout=StringIO())
    assert exc.value.returncode == 2
    with pytest.raises(SigningKeysMismatch, match="is not the public key"):
        checkpoints_sign()
    # Not a 500: the same 503 as a missing key, naming no path or setting.
    for path in ("/api/v1/ledger/verify", "/api/v1/ledger/public-key"):
        response = key_client(scopes=["read"]).get(path)
        assert response.status_code == 503, path
        assert "misconfigured" in response.json()["error"]["message"]
        assert "ledger-signing" not in response.content.decode()
    with pytest.raises(CommandError, match="is not the public key") as exc:
        call_command("ledger_public_key", stdout=StringIO())
    assert exc.value.returncode == 2  # a configuration error, as verify_ledger's


@pytest.mark.parametrize("content", ["", "private", "two"])
def test_a_public_file_that_is_no_public_key_is_a_503_and_an_exit_2_not_a_500(
    signed_chain, signer, web, key_client, content
):
    """Copied by hand after each rotation, a wrong or empty copy is a likely slip."""
    folder = web("file")
    text = {
        "": "",
        "private": _private_pem(Ed25519PrivateKey.generate()),
        "two": public_key_pem() + public_key_to_pem(Ed25519PrivateKey.generate().public_key()),
    }[content]
    (folder / PUBLIC_KEY_FILE_NAME).write_text(text)

    for path in (VERIFY, CHECKPOINTS, PUBLIC_KEY):
        response = key_client(scopes=["read"]).get(path)
        assert response.status_code == 503, (path, response.content)
        assert "misconfigured" in response.json()["error"]["message"]
        assert PUBLIC_KEY_FILE_NAME not in response.content.decode()
    for command in ("verify_ledger", "ledger_public_key"):
        with pytest.raises(CommandError, match=PUBLIC_KEY_FILE_NAME) as exc:
            call_command(command, stdout=StringIO())
        assert exc.value.returncode == 2, command


def test_the_event_page_says_the_keys_cannot_be_used_instead_of_a_500(
    signed_chain, settings, client, superuser
):
    """Its verification checks the checkpoint at the event's sequence with the public key."""
    settings.TRACELEDGER_SIGNING_PUBLIC_KEY = public_key_to_pem(
        Ed25519PrivateKey.generate().public_key()
    )
    event = AuditEvent.objects.get(tenant_id=signed_chain.tenant_id, sequence=3)
    client.force_login(superuser)

    page = client.get(reverse("admin:audit_auditevent_change", args=[event.pk]))

    assert page.status_code == 200
    assert "not checked: The ledger&#x27;s keys are misconfigured" in page.content.decode()


def test_the_matching_public_key_beside_the_private_one_is_accepted(signed_chain, settings):
    settings.TRACELEDGER_SIGNING_PUBLIC_KEY = public_key_pem()
    assert ledger_verify(tenant_id=signed_chain.tenant_id).ok


def test_the_settings_refuse_a_public_key_that_is_not_the_configured_private_key_s():
    private = Ed25519PrivateKey.generate()
    other = public_key_to_pem(Ed25519PrivateKey.generate().public_key())

    with pytest.raises(ImproperlyConfigured, match="not the public key of TRACELEDGER_SIGNING_KEY"):
        guard_public_key(other, signing_pem=_private_pem(private))
    guard_public_key(public_key_to_pem(private.public_key()), signing_pem=_private_pem(private))
    guard_public_key(other, signing_pem="")
    guard_public_key("", signing_pem=_private_pem(private))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("garbage", "not a PEM block"),
        (None, "is a PRIVATE KEY, not a PUBLIC KEY"),
        ("two", "holds 2 public keys, not one"),
    ],
)
def test_the_settings_refuse_a_public_key_that_is_not_one_ed25519_public_key(text, message):
    if text is None:
        text = _private_pem(Ed25519PrivateKey.generate())
    elif text == "two":
        text = "".join(
            public_key_to_pem(Ed25519PrivateKey.generate().public_key()) for _ in range(2)
        )
    with pytest.raises(ImproperlyConfigured, match=message):
        guard_public_key(text, signing_pem="")


def test_a_mismatched_pair_in_the_environment_stops_the_process_with_one_line(settings):
    env = {
        **os.environ,
        "TRACELEDGER_SIGNING_KEY": _private_pem(Ed25519PrivateKey.generate()),
        "TRACELEDGER_SIGNING_PUBLIC_KEY": public_key_to_pem(
            Ed25519PrivateKey.generate().public_key()
        ),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        "configuration error: TRACELEDGER_SIGNING_PUBLIC_KEY is not the public key of "
        "TRACELEDGER_SIGNING_KEY"
    )


# --- signing still needs the private key ----------------------------------------------------


@pytest.mark.parametrize("how", ["file", "setting"])
def test_signing_with_the_public_key_alone_is_refused_and_makes_no_key(
    tenant, signed_chain, web, how
):
    folder = web(how)
    before = _names(folder)
    chained_events_create(tenant_id=tenant.id, count=1, start=3)

    with pytest.raises(SigningKeyMissing, match="has the public key alone"):
        checkpoints_sign()
    with pytest.raises(CommandError, match=r"cannot sign: .*makes no new key") as raised:
        call_command("sign_checkpoints", stdout=StringIO())

    assert raised.value.returncode == 2
    assert _names(folder) == before  # neither a private key nor a replaced public file
    assert Checkpoint.objects.count() == 1


def test_a_purge_with_the_public_key_alone_is_refused_before_removing_anything(
    tenant, signed_chain, web
):
    web("file")
    with pytest.raises(CommandError, match="cannot sign the purge checkpoint") as raised:
        call_command(
            "purge_events",
            "--tenant",
            "acme",
            "--before",
            "2026-01-03",
            "--yes",
            stdout=StringIO(),
            stderr=StringIO(),
        )
    assert raised.value.returncode == 2
    assert AuditEvent.objects.filter(tenant=tenant).count() == 3


def test_a_rotation_is_refused_where_the_public_key_is_configured(signer, settings):
    folder = signer()
    before = (folder / KEY_FILE_NAME).read_bytes()
    settings.TRACELEDGER_SIGNING_PUBLIC_KEY = public_key_pem()

    with pytest.raises(CommandError, match="TRACELEDGER_SIGNING_PUBLIC_KEY, which a new key"):
        call_command("rotate_signing_key", stdout=StringIO())

    assert (folder / KEY_FILE_NAME).read_bytes() == before
    assert not (folder / RETIRED_FILE_NAME).exists()
