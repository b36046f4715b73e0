"""manage.py ledger_public_key: print the PEM public key that verifies checkpoints."""

from django.core.management.base import BaseCommand, CommandError

from audit.ledger.signing import SigningKeyMissing, key_id, public_key_pem


class Command(BaseCommand):
    help = "Print the Ed25519 public key (PEM) that verifies the ledger's signed checkpoints."

    def add_arguments(self, parser):
        parser.add_argument(
            "--key-id", action="store_true", help="print the key id (fingerprint) too"
        )

    def handle(self, *args, **options):
        try:
            pem = public_key_pem()
        except SigningKeyMissing as exc:
            raise CommandError(str(exc)) from None
        if options.get("key_id"):
            self.stderr.write(f"key_id: {key_id()}")
        self.stdout.write(pem, ending="")
