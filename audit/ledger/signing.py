"""Ed25519 signing of checkpoints.

The key comes from ``settings.TRACELEDGER_SIGNING_KEY`` (a PEM private key; ``_FILE``
works too) or, when that is empty, from ``DATA_DIR/ledger-signing-key.pem``, generated with
mode 0600 by the first signing, or when a worker that signs starts
(``audit.worker_signals``). Only the signer creates it: a process
that verifies or shows the public key and finds none raises ``SigningKeyMissing`` instead
of making up an unrelated key (which would call every signed checkpoint forged).
``key_id`` is the SHA-256 of the raw 32-byte public key (hex), so a verifier can tell which
key signed a checkpoint.

The signed message is the RFC 8785 serialization of
``{"details", "hash", "kind", "sequence", "signed_at", "tenant_id"}`` (``checkpoint_message``),
re-implemented in ``tools/verify_export.py``.

Rotation (``signing_key_rotate``) retires the current key to ``keyring`` (public part only)
before replacing it, so the checkpoints it signed keep verifying.
"""

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
    file_stamp,
    key_id_of,
    public_key_to_pem,
    retired_key_append,
    retired_keys,
)
from traceledger.errors import DependencyUnavailable
from traceledger.private_files import private_file_once, private_file_replace

KEY_FILE_NAME = "ledger-signing-key.pem"


class SigningKeyMissing(DependencyUnavailable):
    """No signing key where this process looks for one (an API answers 503; the path and
    the setting are for the log and the command line, not for API clients)."""

    public_message = (
        "The ledger signing key is not available on this server yet (it is made when the "
        "worker that signs checkpoints starts); retry later."
    )


class RotationRefused(Exception):
    """The key cannot be rotated here (it comes from the environment, or there is none)."""


def _key_file() -> Path:
    return Path(settings.DATA_DIR) / KEY_FILE_NAME


def _new_key_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


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


def signing_key(*, create: bool = False) -> Ed25519PrivateKey:
    """The key; with ``create``, generated into the data folder when there is none.

    Cached per content of the key file (its inode, time and size), so a key rotated by
    another process is picked up at the next call, without a restart."""
    configured = settings.TRACELEDGER_SIGNING_KEY
    path = _key_file()
    stamp = None if configured else file_stamp(path)
    return _private_key(configured, str(path), create, stamp)


def public_key() -> Ed25519PublicKey:
    return signing_key().public_key()


def public_key_pem() -> str:
    return public_key_to_pem(public_key())


def key_id() -> str:
    return key_id_of(public_key())


def verification_key(wanted_key_id: str) -> Ed25519PublicKey | None:
    """The public key with this id: the current key or a retired one; None when unknown."""
    current = public_key()
    if key_id_of(current) == wanted_key_id:
        return current
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
    path = _key_file()
    if not path.exists():
        raise RotationRefused(f"there is no signing key to rotate: {path} does not exist")
    old = signing_key().public_key()
    retired_key_append(old)
    pem = _new_key_pem()
    new = serialization.load_pem_private_key(pem, password=None)
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
