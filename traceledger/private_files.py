"""Files of secrets a process makes once and every process of the install shares (the
ledger's signing key, a development install's Django secret key).

The content is written whole under another name and linked into place: a process starting
at the same moment either finds no file or the complete one, never a partial one (which an
``O_EXCL`` create-then-write allowed), and two processes agree on one content.
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
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        # When another process won, its content is the install's.
        with contextlib.suppress(FileExistsError):
            os.link(staged, path)
    finally:
        staged.unlink()
    return path.read_bytes()
