"""Refuse to start a production process with development defaults or bad settings."""

import os
import sys
from typing import NoReturn

from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured


def guard_production_settings(
    *, debug: bool, secret_key: str, insecure_secret_key: str, allowed_hosts: list[str]
) -> None:
    if secret_key == insecure_secret_key:
        # Published in the source: anyone could sign sessions and JWTs with it.
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is the key published in TraceLedger's source: unset it (in "
            "debug a random one is kept in the data folder) or set a random value"
        )
    if debug:
        return
    problems = []
    # Django's own bar (security.W009), with its own constants, so a key accepted here also
    # passes `check --deploy` and follows it should Django raise the bar.
    if (
        len(secret_key) < SECRET_KEY_MIN_LENGTH
        or len(set(secret_key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
        or secret_key.startswith(SECRET_KEY_INSECURE_PREFIX)
    ):
        problems.append(
            "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) must be set to a random value of "
            f"at least {SECRET_KEY_MIN_LENGTH} characters, not starting with "
            f'"{SECRET_KEY_INSECURE_PREFIX}" (e.g. python -c "import secrets; '
            'print(secrets.token_urlsafe(50))")'
        )
    if not allowed_hosts:
        problems.append("DJANGO_ALLOWED_HOSTS must list the host names this service answers to")
    if problems:
        raise ImproperlyConfigured(
            "Refusing to start with DJANGO_DEBUG=0 and insecure settings: " + "; ".join(problems)
        )


def guard_signing_key(pem: str) -> None:
    """A configured checkpoint key that is not an Ed25519 private key stops the process now,
    not at the first signature or verification (500s on the ledger API)."""
    if not pem:
        return
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured(
            "TRACELEDGER_SIGNING_KEY (or TRACELEDGER_SIGNING_KEY_FILE) is not an unencrypted PEM "
            "Ed25519 private key (make one with: openssl genpkey -algorithm ed25519)"
        )


def guard_public_key(text: str, *, signing_pem: str) -> None:
    """The configured current public key must be one Ed25519 public key and, when the
    private key is configured too, its public half: verifying against another key would
    report every signed checkpoint as forged (or accept checkpoints of the wrong signer)."""
    if not text:
        return
    from audit.ledger.keyring import PUBLIC_SETTING, key_id_of, public_key_parse

    key = public_key_parse(text, source=f"{PUBLIC_SETTING} (or {PUBLIC_SETTING}_FILE)")
    if not signing_pem:
        return
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(signing_pem.encode(), password=None)
    if key_id_of(private.public_key()) != key_id_of(key):
        raise ImproperlyConfigured(
            f"{PUBLIC_SETTING} is not the public key of TRACELEDGER_SIGNING_KEY (key "
            f"{key_id_of(key)[:16]}…, the private key's is "
            f"{key_id_of(private.public_key())[:16]}…): give a process the matching pair, or "
            "only one of them"
        )


def guard_retired_keys(text: str) -> None:
    """Retired checkpoint keys that are not Ed25519 public keys stop the process now, not at
    the first verification of a checkpoint they signed."""
    if text:
        from audit.ledger.keyring import SETTING, public_keys_parse

        public_keys_parse(text, source=f"{SETTING} (or {SETTING}_FILE)")


def guard_metrics_dir(path: str) -> None:
    """prometheus_client writes each process's counters into this folder from the first
    metric defined on: a missing or read-only one would otherwise fail at import, with a
    traceback ending in ``counter_<pid>.db``."""
    if path and not (os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)):
        raise ImproperlyConfigured(
            f"PROMETHEUS_MULTIPROC_DIR={path!r} is not a folder this process can write: "
            "create it (empty) before starting the processes that share it, or unset it"
        )


def exit_on_configuration_error(exc: ImproperlyConfigured) -> NoReturn:
    """What every process prints for a bad setting (manage.py, celery worker and beat,
    gunicorn): one line naming the variable, exit 2, instead of a traceback."""
    print(f"configuration error: {exc}", file=sys.stderr, flush=True)
    sys.exit(2)
