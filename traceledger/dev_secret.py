"""The secret key of a development install (``DJANGO_DEBUG`` on, no ``DJANGO_SECRET_KEY``).

A key written in the source signs the sessions and the JWTs (simplejwt's ``SIGNING_KEY``) of
every install that runs with it: whoever reads the source can then mint a superuser's
token for any such stack they can reach. Instead each install makes a random key once, kept
in its data folder (mode 0600), which every process of the install shares.
"""

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

FILE_NAME = "django-secret-key"


def development_secret_key(data_dir: Path) -> str:
    path = data_dir / FILE_NAME
    try:
        return _read(path) or _create(data_dir, path)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY is unset and {path} cannot be used ({exc.strerror}): set "
            "DJANGO_SECRET_KEY, or TRACELEDGER_DATA_DIR to a writable folder"
        ) from None


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def _create(data_dir: Path, path: Path) -> str:
    data_dir.mkdir(parents=True, exist_ok=True)
    # Written whole under another name, then linked into place: a process starting at the
    # same moment either finds no file or the complete key, never a partial one.
    staged = data_dir / f".{FILE_NAME}.{secrets.token_hex(8)}"
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(50))
    try:
        os.link(staged, path)
    except FileExistsError:
        pass  # another process won: its key is the install's
    finally:
        staged.unlink()
    return _read(path)
