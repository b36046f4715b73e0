"""Ed25519 signing of checkpoints.

Two kinds of process use the key, and only one of them needs its private half:

* the **signer** (a worker consuming ``maintenance``, ``manage.py sign_checkpoints``,
  ``purge_events`` and ``rotate_signing_key``) signs with the private key:
  ``settings.TRACELEDGER_SIGNING_KEY`` (a PEM private key; ``_FILE`` works too) or, when that
  is empty, ``DATA_DIR/ledger-signing-key.pem``, generated with mode 0600 by the first
  signing, or when a worker that signs starts (``audit.worker_signals``). Beside that file it
  keeps its public half, ``DATA_DIR/ledger-public-key.pem`` (0644), written with the key,
  replaced by a rotation, and rewritten by the signer when it is missing or stale;
* a **verifier** (the ledger API, ``verify_ledger``, ``ledger_public_key``) needs only the
  public key: the private key's when this process has one (so a process holding the private
  key works as before), otherwise ``settings.TRACELEDGER_SIGNING_PUBLIC_KEY`` (``_FILE``
  works too), otherwise ``DATA_DIR/ledger-public-key.pem``. A configured public key that is
  not the private key's is a configuration error, never a silent choice between them.

Only the signer creates a key, and only where no public key is given: a process or a data
folder that has the public key alone serves a signer elsewhere, and a new key made there
would not match it. A process that verifies or shows the public key and finds none raises
``SigningKeyMissing`` instead of making up an unrelated key (which would call every signed
checkpoint forged).
``key_id`` is the SHA-256 of the raw 32-byte public key (hex), so a verifier can tell which
key signed a checkpoint.

The signed message is the RFC 8785 serialization of
``{"details", "hash", "kind", "sequence", "signed_at", "tenant_id"}`` (``checkpoint_message``),
re-implemented in ``tools/verify_export.py``.

Rotation (``signing_key_rotate``) retires the current key to ``keyring`` (public part only)
before replacing it, so the checkpoints it signed keep verifying.
"""

from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from audit.ledger.canonical import format_timestamp
from audit.ledger.keyring import (
    PUBLIC_SETTING,
    file_stamp,
    key_id_of,
    public_key_parse,
    public_key_to_pem,
    retired_key_append,
    retired_keys,
)
from traceledger.errors import DependencyUnavailable
from traceledger.private_files import private_file_once, private_file_replace

KEY_FILE_NAME = "ledger-signing-key.pem"
PUBLIC_KEY_FILE_NAME = "ledger-public-key.pem"


class SigningKeyMissing(DependencyUnavailable):
    """No key where this process looks for one: no public key for a verifier, no private
    key for a signer that must not make one (an API answers 503; the path and the setting
    are for the log and the command line, not for API clients)."""

    public_message = (
        "The ledger's public key is not available on this server yet (it is made when the "
        "worker that signs checkpoints starts); retry later."
    )


class SigningKeyMisconfigured(SigningKeyMissing):
    """Key material this process cannot use: a key file that is no key of the right kind
    (a public file copied by hand as the private key, an empty file), or a pair that does
    not match. No key this process can trust: commands exit 2 and the API answers 503
    naming no path, as for a missing key, not a 500."""

    public_message = (
        "The ledger's keys are misconfigured on this server; an operator must fix this."
    )


class SigningKeysMismatch(SigningKeyMisconfigured):
    """The configured public key is not the private key's (the data folder's key file was
    replaced, or the setting is stale)."""


@contextmanager
def _misconfiguration_named():
    """A key file read at use (never checked at start: it may change at any time) that is
    no key raises ``ImproperlyConfigured`` in the parsers: as ``SigningKeyMisconfigured``."""
    try:
        yield
    except ImproperlyConfigured as exc:
        raise SigningKeyMisconfigured(str(exc)) from exc


class RotationRefused(Exception):
    """The key cannot be rotated here (it comes from the environment, or there is none)."""


def _key_file() -> Path:
    return Path(settings.DATA_DIR) / KEY_FILE_NAME


def _public_key_file() -> Path:
    return Path(settings.DATA_DIR) / PUBLIC_KEY_FILE_NAME


def private_key_to_pem(key: Ed25519PrivateKey) -> bytes:
    """PKCS #8 PEM, unencrypted: the key file's form, and TRACELEDGER_SIGNING_KEY's."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _new_key_pem() -> bytes:
    return private_key_to_pem(Ed25519PrivateKey.generate())


@lru_cache(maxsize=4)
def _private_key(configured_pem: str, key_file: str, create: bool, stamp=None) -> Ed25519PrivateKey:
    if configured_pem:
        pem = configured_pem.encode()
        source = "TRACELEDGER_SIGNING_KEY"
    else:
        path = Path(key_file)
        if path.exists():
            pem = path.read_bytes()
        elif create:
            _refuse_a_key_beside_a_public_one(path)
            # Two processes starting at once agree on one key (never each their own).
            pem = private_file_once(path, _new_key_pem())
        else:
            raise SigningKeyMissing(
                f"the ledger signing key is not available: {path} does not exist and "
                "TRACELEDGER_SIGNING_KEY is empty (run this where the checkpoints are signed, "
                "with the same TRACELEDGER_DATA_DIR or TRACELEDGER_SIGNING_KEY)"
            )
        source = str(path)
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"{source} is not a PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured(f"{source} is not an Ed25519 private key")
    return key


def _refuse_a_key_beside_a_public_one(path: Path) -> None:
    """A process given the public key alone verifies for a signer elsewhere: a key made here
    would not match it (and, in a shared data folder, would replace the public file)."""
    if settings.TRACELEDGER_SIGNING_PUBLIC_KEY:
        given = PUBLIC_SETTING
    elif _public_key_file().exists():
        given = str(_public_key_file())
    else:
        return
    raise SigningKeyMissing(
        f"the ledger signing key is not available: {path} does not exist and "
        f"TRACELEDGER_SIGNING_KEY is empty, and this process has the public key alone "
        f"({given}), so it makes no new key (it would not match): sign where the private "
        "key is, or give this process TRACELEDGER_SIGNING_KEY"
    )


@lru_cache(maxsize=4)
def _configured_public_key(pem: str) -> Ed25519PublicKey:
    return public_key_parse(pem, source=PUBLIC_SETTING)


@lru_cache(maxsize=4)
def _public_file_key(path: str, stamp) -> Ed25519PublicKey:
    return public_key_parse(Path(path).read_text(), source=path)


@lru_cache(maxsize=4)
def _public_file_text(path: str, stamp) -> str | None:
    return None if stamp is None else Path(path).read_text()


def _check_pair(key: Ed25519PrivateKey, *, source: str) -> None:
    """The configured public key, if any, must be ``key``'s: verifying against another one
    would report every checkpoint as forged, or trust a key that is not the signer's."""
    configured = settings.TRACELEDGER_SIGNING_PUBLIC_KEY
    if not configured:
        return
    given, own = key_id_of(_configured_public_key(configured)), key_id_of(key.public_key())
    if given != own:
        raise SigningKeysMismatch(
            f"{PUBLIC_SETTING} is not the public key of {source} (key {given[:16]}…, the "
            f"private key's is {own[:16]}…): give a process the matching pair, or only one "
            "of them"
        )


def _public_file_keep(key: Ed25519PrivateKey) -> None:
    """Keep ``ledger-public-key.pem`` the public half of the data folder's key file: written
    when missing (a key made before this file existed), rewritten when stale (a key file
    replaced by hand, or a rotation interrupted between the two files)."""
    path = _public_key_file()
    wanted = public_key_to_pem(key.public_key())
    if _public_file_text(str(path), file_stamp(path)) != wanted:
        private_file_replace(path, wanted.encode(), mode=0o644)


def signing_key(*, create: bool = False) -> Ed25519PrivateKey:
    """The private key; with ``create`` (the signer), generated into the data folder when
    there is none and no public key is given, and its public file kept beside it.

    Cached per content of the key file (its inode, time and size), so a key rotated by
    another process is picked up at the next call, without a restart."""
    configured = settings.TRACELEDGER_SIGNING_KEY
    path = _key_file()
    stamp = None if configured else file_stamp(path)
    with _misconfiguration_named():
        key = _private_key(configured, str(path), create, stamp)
    _check_pair(key, source="TRACELEDGER_SIGNING_KEY" if configured else str(path))
    if create and not configured:
        _public_file_keep(key)
    return key


def public_key() -> Ed25519PublicKey:
    """The current public key: the private key's when this process has one, otherwise
    ``TRACELEDGER_SIGNING_PUBLIC_KEY``, otherwise the data folder's ``ledger-public-key.pem``
    (re-read when it changes, as the key file is); ``SigningKeyMissing`` when none is there.
    Needs no private key: the web verifies and serves the public key without one."""
    try:
        return signing_key().public_key()
    except SigningKeyMisconfigured:
        raise  # not "no private key": the configured public key is not to be trusted either
    except SigningKeyMissing:
        pass
    configured = settings.TRACELEDGER_SIGNING_PUBLIC_KEY
    if configured:
        return _configured_public_key(configured)
    path = _public_key_file()
    stamp = file_stamp(path)
    if stamp is None:
        raise SigningKeyMissing(
            "the ledger's public key is not available: TRACELEDGER_SIGNING_KEY and "
            f"{PUBLIC_SETTING} are empty, and neither {_key_file()} nor {path} exists (give "
            f"this process the public key, in {PUBLIC_SETTING} or as the signer's "
            f"{PUBLIC_KEY_FILE_NAME} in its TRACELEDGER_DATA_DIR, or run this where the "
            "checkpoints are signed)"
        )
    with _misconfiguration_named():
        return _public_file_key(str(path), stamp)


def public_key_pem() -> str:
    return public_key_to_pem(public_key())


def key_id() -> str:
    return key_id_of(public_key())


def verification_key(wanted_key_id: str) -> Ed25519PublicKey | None:
    """The public key with this id: the current key or a retired one; None when unknown."""
    current = public_key()
    if key_id_of(current) == wanted_key_id:
        return current
    with _misconfiguration_named():
        return retired_keys().get(wanted_key_id)


def signing_key_rotate() -> tuple[str, str]:
    """Replace the data folder's signing key with a new one; returns (old, new) key ids.

    The old public key is appended to the retired list (and synced) before the key file is
    replaced, so at every moment each checkpoint's key is known: a crash in between leaves
    the old key in both places, which is harmless. Checkpoints signed from now on use the
    new key; every process picks it up at its next signature (see ``signing_key``).
    """
    if settings.TRACELEDGER_SIGNING_KEY:
        raise RotationRefused(
            "the signing key comes from TRACELEDGER_SIGNING_KEY: rotate it there (set the new "
            "private key, and add the old public key, from manage.py ledger_public_key, to "
            "TRACELEDGER_SIGNING_RETIRED_KEYS) and restart the processes"
        )
    if settings.TRACELEDGER_SIGNING_PUBLIC_KEY:
        raise RotationRefused(
            f"this process is given the public key in {PUBLIC_SETTING}, which a new key "
            "would contradict: rotate where it is not set (a process with the private key "
            "does not need it), then set the new public key (manage.py ledger_public_key) "
            "wherever it is configured and restart those processes"
        )
    path = _key_file()
    if not path.exists():
        raise RotationRefused(f"there is no signing key to rotate: {path} does not exist")
    old = signing_key().public_key()
    retired_key_append(old)
    pem = _new_key_pem()
    new = serialization.load_pem_private_key(pem, password=None)
    # The public file before the key file: a crash in between leaves the old key signing,
    # already retired (so its checkpoints verify everywhere), beside a public key that has
    # signed nothing yet; the signer then puts the old public key back (_public_file_keep).
    public = public_key_to_pem(new.public_key()).encode()
    private_file_replace(_public_key_file(), public, mode=0o644)
    private_file_replace(path, pem)
    return key_id_of(old), key_id_of(new.public_key())


def checkpoint_message(
    *,
    tenant_id: int,
    sequence: int,
    hash: str,
    signed_at: datetime | str,
    kind: str,
    details: dict[str, Any],
) -> bytes:
    return rfc8785.dumps(
        {
            "tenant_id": tenant_id,
            "sequence": sequence,
            "hash": hash,
            "signed_at": format_timestamp(signed_at),
            "kind": kind,
            "details": details,
        }
    )


def checkpoint_sign(**fields: Any) -> tuple[str, str]:
    """(hex Ed25519 signature of ``checkpoint_message(**fields)``, the signing key's id), both
    from one read of the key, so a rotation in between cannot pair them wrongly."""
    key = signing_key(create=True)
    return key.sign(checkpoint_message(**fields)).hex(), key_id_of(key.public_key())


def checkpoint_signature_valid(checkpoint, *, key: Ed25519PublicKey | None = None) -> bool:
    """Whether ``checkpoint`` (a ``Checkpoint``) carries a valid signature of its fields by
    ``key`` (default: the key its ``key_id`` names, current or retired). A checkpoint of an
    unknown key id, or of another id than ``key``'s, is not valid."""
    key = key or verification_key(checkpoint.key_id)
    if key is None or checkpoint.key_id != key_id_of(key):
        return False
    try:
        key.verify(
            bytes.fromhex(checkpoint.signature),
            checkpoint_message(
                tenant_id=checkpoint.tenant_id,
                sequence=checkpoint.sequence,
                hash=checkpoint.hash,
                signed_at=checkpoint.signed_at,
                kind=checkpoint.kind,
                details=checkpoint.details,
            ),
        )
    except (InvalidSignature, ValueError):
        return False
    return True
