"""Files of secrets a process makes once and every process of the install shares (the
ledger's signing key, a development install's Django secret key), and the public files kept
beside them (the ledger's public key, mode 0644).

The content is written whole under another name and linked (or, to replace a file, renamed)
into place: a process starting at the same moment either finds no file or the complete one,
never a partial one (which an ``O_EXCL`` create-then-write allowed), and two processes agree
on one content.
"""

import contextlib
import os
import secrets
from pathlib import Path


def private_file_once(path: Path, content: bytes) -> bytes:
    """``path``'s content; when there is none yet, ``content``, written with mode 0600."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    staged = _staged(path, content)
    try:
        # When another process won, its content is the install's.
        with contextlib.suppress(FileExistsError):
            os.link(staged, path)
    finally:
        staged.unlink()
    return path.read_bytes()


def private_file_replace(path: Path, content: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` by ``content`` (``mode``, less the umask): a reader finds the old file
    or the new one, whole; the new one is on disk, its directory entry included, when this
    returns."""
    staged = _staged(path, content, mode=mode)
    try:
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _staged(path: Path, content: bytes, *, mode: int = 0o600) -> Path:
    """``content`` synced to a new file (``mode``) beside ``path``, under a name of its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return staged
