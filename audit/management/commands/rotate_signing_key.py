"""manage.py rotate_signing_key: a new checkpoint signing key; the old one is retired."""

from django.core.management.base import BaseCommand, CommandError

from audit.ledger.services import signing_key_rotate_recorded
from audit.ledger.signing import RotationRefused
from traceledger.command_args import actor_name, add_actor_argument


class Command(BaseCommand):
    help = (
        "Replace the ledger's checkpoint signing key in the data folder with a new one, and "
        "ledger-public-key.pem there with its public key. The old public key is appended to "
        "ledger-retired-keys.pem there, so the checkpoints it signed keep verifying; running "
        "processes sign with the new key from their next checkpoint. Recorded as "
        "ledger.key_rotate in the system audit trail. For a key given in "
        "TRACELEDGER_SIGNING_KEY, rotate it there (see docs/ledger.md)."
    )

    def add_arguments(self, parser):
        add_actor_argument(parser, doing="rotating")

    def handle(self, *args, actor: str | None, **options):
        actor = actor_name(actor)
        try:
            old, new = signing_key_rotate_recorded(actor=actor)
        except RotationRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"retired key_id: {old}")
        self.stdout.write(f"new key_id:     {new}")
        self.stdout.write(
            "Checkpoints are signed with the new key from the next run of sign_checkpoints; "
            "publish the new public key (manage.py ledger_public_key) to offline verifiers, "
            "and copy ledger-public-key.pem and ledger-retired-keys.pem (or set "
            "TRACELEDGER_SIGNING_PUBLIC_KEY and TRACELEDGER_SIGNING_RETIRED_KEYS) wherever "
            "a process verifies without the private key."
        )
