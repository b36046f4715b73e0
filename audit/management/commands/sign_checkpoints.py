"""manage.py sign_checkpoints: sign a checkpoint for each tenant whose chain moved."""

from django.core.management.base import BaseCommand

from accounts.models import Tenant
from audit.ledger.services import checkpoints_sign


class Command(BaseCommand):
    help = (
        "Sign a ledger checkpoint (tenant, sequence, hash, time) for every tenant whose "
        "chain head moved since its last checkpoint. Also runs periodically (Celery beat)."
    )

    def handle(self, *args, **options):
        created = checkpoints_sign()
        slugs = dict(
            Tenant.objects.filter(id__in=[c.tenant_id for c in created]).values_list("id", "slug")
        )
        for checkpoint in created:
            self.stdout.write(
                f"{slugs.get(checkpoint.tenant_id, checkpoint.tenant_id)}: signed sequence "
                f"{checkpoint.sequence} {checkpoint.hash}"
            )
        self.stdout.write(f"{len(created)} checkpoints signed")
