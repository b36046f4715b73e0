"""Retired checkpoint keys: public keys that no longer sign but still verify.

Rotating the signing key must not turn every checkpoint signed before it into a reported
break. A checkpoint names the key that signed it (``key_id``), so a verifier looks that id up
among the current key and the retired public keys, which come from:

* ``settings.TRACELEDGER_SIGNING_RETIRED_KEYS`` (``_FILE`` works too): PEM public keys,
  one after the other, for a key kept outside the data folder;
* ``DATA_DIR/ledger-retired-keys.pem``, to which ``manage.py rotate_signing_key`` appends the
  key it replaces.

Only public keys are kept: a retired key can verify what it signed and sign nothing more.
"""

import hashlib
import os
import re
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

RETIRED_FILE_NAME = "ledger-retired-keys.pem"
SETTING = "TRACELEDGER_SIGNING_RETIRED_KEYS"
# The current public key, for a process without the private key (audit.ledger.signing).
PUBLIC_SETTING = "TRACELEDGER_SIGNING_PUBLIC_KEY"

_PEM_BLOCK = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----\s.*?-----END \1-----", flags=re.DOTALL | re.ASCII
)


def key_id_of(key: Ed25519PublicKey) -> str:
    """Lowercase hex SHA-256 of the raw 32-byte public key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_key_to_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def public_keys_parse(text: str, *, source: str) -> dict[str, Ed25519PublicKey]:
    """Every PEM public key in ``text`` by key id; anything else there is an error naming
    ``source`` (a private key included: it has no business in a list of retired keys)."""
    keys: dict[str, Ed25519PublicKey] = {}
    blocks = list(_PEM_BLOCK.finditer(text))
    leftover = _PEM_BLOCK.sub("", text).strip()
    if leftover:
        raise ImproperlyConfigured(f"{source} holds text that is not a PEM block")
    for number, block in enumerate(blocks, start=1):
        if block.group(1) != "PUBLIC KEY":
            raise ImproperlyConfigured(
                f"{source}: block {number} is a {block.group(1)}, not a PUBLIC KEY "
                "(give public keys only: manage.py ledger_public_key prints one)"
            )
        try:
            key = serialization.load_pem_public_key(block.group(0).encode())
        except ValueError:
            key = None
        if not isinstance(key, Ed25519PublicKey):
            raise ImproperlyConfigured(f"{source}: block {number} is not an Ed25519 public key")
        keys[key_id_of(key)] = key
    return keys


def public_key_parse(text: str, *, source: str) -> Ed25519PublicKey:
    """The one PEM Ed25519 public key in ``text``; anything else is an error naming
    ``source``."""
    keys = public_keys_parse(text, source=source)
    if len(keys) != 1:
        raise ImproperlyConfigured(
            f"{source} holds {len(keys)} public keys, not one "
            "(manage.py ledger_public_key prints the current one)"
        )
    return next(iter(keys.values()))


def retired_file() -> Path:
    return Path(settings.DATA_DIR) / RETIRED_FILE_NAME


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """Identity of the file's current content, so a rotation by another process is seen
    without re-reading the file on every verification."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=4)
def _retired(configured: str, path: str, stamp) -> dict[str, Ed25519PublicKey]:
    keys = public_keys_parse(configured, source=SETTING) if configured else {}
    if stamp is not None:
        keys.update(public_keys_parse(Path(path).read_text(), source=path))
    return keys


def retired_keys() -> dict[str, Ed25519PublicKey]:
    """Retired public keys by key id (the setting's and the data folder's)."""
    path = retired_file()
    return _retired(settings.TRACELEDGER_SIGNING_RETIRED_KEYS, str(path), file_stamp(path))


def retired_key_append(key: Ed25519PublicKey) -> bool:
    """Add ``key`` to the data folder's list (durably, before the key file is replaced);
    False when it is there already."""
    path = retired_file()
    if key_id_of(key) in retired_keys():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="ascii") as handle:
        handle.write(public_key_to_pem(key))
        handle.flush()
        os.fsync(handle.fileno())
    return True
