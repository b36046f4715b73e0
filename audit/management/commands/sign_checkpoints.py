"""manage.py sign_checkpoints: sign a checkpoint for each tenant whose chain moved."""

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Tenant
from audit.ledger.services import checkpoints_sign
from audit.ledger.signing import SigningKeyMissing
from traceledger.command_args import counted


class Command(BaseCommand):
    help = (
        "Sign a ledger checkpoint (tenant, sequence, hash, time) for every tenant whose "
        "chain head moved since its last checkpoint. Also runs periodically (Celery beat)."
    )

    def handle(self, *args, **options):
        refused: list[int] = []
        try:
            created = checkpoints_sign(refused=refused)
        except SigningKeyMissing as exc:
            # Exit 2, as verify_ledger's "could not check": exit 1 means a chain was refused.
            raise CommandError(f"cannot sign: {exc}", returncode=2) from None
        slugs = dict(
            Tenant.objects.filter(id__in=[c.tenant_id for c in created] + refused).values_list(
                "id", "slug"
            )
        )
        for checkpoint in created:
            self.stdout.write(
                f"{slugs.get(checkpoint.tenant_id, checkpoint.tenant_id)}: signed sequence "
                f"{checkpoint.sequence} {checkpoint.hash}"
            )
        self.stdout.write(f"{counted(len(created), 'checkpoint')} signed")
        if refused:
            # Non-zero for cron: a chain that does not verify is evidence to look at.
            names = ", ".join(str(slugs.get(tenant_id, tenant_id)) for tenant_id in refused)
            raise CommandError(f"not signed, the chain does not verify (see the log): {names}")
