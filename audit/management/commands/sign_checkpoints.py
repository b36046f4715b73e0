"""manage.py sign_checkpoints: sign a checkpoint for each tenant whose chain moved."""

from django.core.management.base import BaseCommand

from audit.ledger.services import checkpoints_sign


class Command(BaseCommand):
    help = (
        "Sign a ledger checkpoint (tenant, sequence, hash, time) for every tenant whose "
        "chain head moved since its last checkpoint. Also runs periodically (Celery beat)."
    )

    def handle(self, *args, **options):
        created = checkpoints_sign()
        for checkpoint in created:
            self.stdout.write(
                f"tenant {checkpoint.tenant_id}: signed sequence {checkpoint.sequence} "
                f"{checkpoint.hash}"
            )
        self.stdout.write(f"{len(created)} checkpoints signed")
