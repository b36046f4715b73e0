"""manage.py ledger_public_key: print the PEM public key that verifies checkpoints."""

from django.core.management.base import BaseCommand, CommandError

from audit.ledger.keyring import public_key_to_pem, retired_keys
from audit.ledger.signing import (
    SigningKeyMisconfigured,
    SigningKeyMissing,
    key_id,
    public_key_pem,
)


class Command(BaseCommand):
    help = "Print the Ed25519 public key (PEM) that verifies the ledger's signed checkpoints."

    def add_arguments(self, parser):
        parser.add_argument(
            "--key-id", action="store_true", help="print the key id (fingerprint) too"
        )
        parser.add_argument(
            "--retired",
            action="store_true",
            help="also print the retired keys (rotated out; they verify the checkpoints "
            "they signed), after the current one",
        )

    def handle(self, *args, **options):
        try:
            pem = public_key_pem()
            current = key_id()
        except SigningKeyMisconfigured as exc:  # as verify_ledger: a configuration error
            raise CommandError(str(exc), returncode=2) from None
        except SigningKeyMissing as exc:
            raise CommandError(str(exc)) from None
        if options.get("key_id"):
            self.stderr.write(f"key_id: {current}")
        self.stdout.write(pem, ending="")
        if options.get("retired"):
            for retired_id, key in retired_keys().items():
                if retired_id == current:
                    continue
                if options.get("key_id"):
                    self.stderr.write(f"retired key_id: {retired_id}")
                self.stdout.write(public_key_to_pem(key), ending="")
