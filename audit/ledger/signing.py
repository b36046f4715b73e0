"""Ed25519 signing of checkpoints.

The key comes from ``settings.TRACELEDGER_SIGNING_KEY`` (a PEM private key; ``_FILE``
works too) or, when that is empty, from ``DATA_DIR/ledger-signing-key.pem``, generated with
mode 0600 by the first signing. Only signing creates it: a process
that verifies or shows the public key and finds none raises ``SigningKeyMissing`` instead
of making up an unrelated key (which would call every signed checkpoint forged).
``key_id`` is the SHA-256 of the raw 32-byte public key (hex), so a verifier can tell which
key signed a checkpoint.

The signed message is the RFC 8785 serialization of
``{"details", "hash", "kind", "sequence", "signed_at", "tenant_id"}`` (``checkpoint_message``),
re-implemented in ``tools/verify_export.py``.
"""

import hashlib
import os
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
from traceledger.errors import DependencyUnavailable

KEY_FILE_NAME = "ledger-signing-key.pem"


class SigningKeyMissing(DependencyUnavailable):
    """No signing key where this process looks for one (an API answers 503)."""


def _key_file() -> Path:
    return Path(settings.DATA_DIR) / KEY_FILE_NAME


def _load_or_create_key_file(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        # O_EXCL: two processes starting at once must not each write (and sign with) a key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return pem


@lru_cache(maxsize=4)
def _private_key(configured_pem: str, key_file: str, create: bool) -> Ed25519PrivateKey:
    if configured_pem:
        pem = configured_pem.encode()
        source = "TRACELEDGER_SIGNING_KEY"
    else:
        path = Path(key_file)
        if path.exists():
            pem = path.read_bytes()
        elif create:
            pem = _load_or_create_key_file(path)
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
    """The key; with ``create``, generated into the data folder when there is none."""
    return _private_key(settings.TRACELEDGER_SIGNING_KEY, str(_key_file()), create)


def public_key() -> Ed25519PublicKey:
    return signing_key().public_key()


def public_key_pem() -> str:
    return (
        public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def key_id_of(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def key_id() -> str:
    return key_id_of(public_key())


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


def checkpoint_sign(**fields: Any) -> str:
    """Hex Ed25519 signature of ``checkpoint_message(**fields)`` with the current key."""
    return signing_key(create=True).sign(checkpoint_message(**fields)).hex()


def checkpoint_signature_valid(checkpoint, *, key: Ed25519PublicKey | None = None) -> bool:
    """Whether ``checkpoint`` (a ``Checkpoint``) carries a valid signature of its fields by
    ``key`` (default: the current key). A checkpoint of another key id is not valid."""
    key = key or public_key()
    if checkpoint.key_id != key_id_of(key):
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
