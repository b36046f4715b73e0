"""The secret key of a development install (``DJANGO_DEBUG`` on, no ``DJANGO_SECRET_KEY``).

A key written in the source signs the sessions and the JWTs (simplejwt's ``SIGNING_KEY``) of
every install that runs with it: whoever reads the source can then mint a superuser's
token for any such stack they can reach. Instead each install makes a random key once, kept
in its data folder (mode 0600), which every process of the install shares.
"""

import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from traceledger.private_files import private_file_once

FILE_NAME = "django-secret-key"


def development_secret_key(data_dir: Path) -> str:
    path = data_dir / FILE_NAME
    try:
        return private_file_once(path, secrets.token_urlsafe(50).encode()).decode().strip()
    except OSError as exc:
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY is unset and {path} cannot be used ({exc.strerror}): set "
            "DJANGO_SECRET_KEY, or TRACELEDGER_DATA_DIR to a writable folder"
        ) from None
