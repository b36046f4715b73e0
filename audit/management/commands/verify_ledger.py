"""manage.py verify_ledger [--tenant SLUG]: exit 0 when every chain verifies, 1 when one does
not, 2 when it could not check (unknown tenant, database unavailable, no public key)."""

import sys

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Tenant
from audit.ledger import selectors
from audit.ledger.signing import SigningKeyMissing
from audit.ledger.verify import ledger_verify
from traceledger.command_args import add_progress_argument, counted, progress_bar

# Below this many events a progress bar is noise.
PROGRESS_MIN_EVENTS = 10_000


class Command(BaseCommand):
    help = (
        "Recompute each tenant's hash chain and check its signed checkpoints. Exits 0 when "
        "every chain verifies, 1 naming the first broken sequence, 2 when it could not check "
        "(unknown tenant, database unavailable, no ledger public key: the private key is not "
        "needed, see docs/ledger.md §5)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", metavar="SLUG", help="verify only this tenant")
        add_progress_argument(parser)

    def handle(self, *args, tenant=None, no_progress=False, **options):
        # Exit 1 means a chain does not verify, and only that: a cron job must be able to
        # tell tampering from a typo or an outage, which exit 2 (an unreachable database:
        # manage.py's own handler).
        try:
            self._verify_all(tenant, no_progress=no_progress)
        except SigningKeyMissing as exc:
            message = f"cannot check the signed checkpoints: {exc}"
            raise CommandError(message, returncode=2) from None

    def _verify_all(self, tenant: str | None, *, no_progress: bool) -> None:
        if tenant is not None:
            found = selectors.tenant_by_slug(slug=tenant)
            if found is None:
                raise CommandError(f"no tenant with slug {tenant!r}", returncode=2)
            tenants = [found]
        else:
            tenants = list(
                Tenant.objects.filter(id__in=selectors.ledger_tenant_ids()).order_by("id")
            )

        broken = 0
        for each in tenants:
            result = self._verify(each, no_progress=no_progress)
            if result.ok:
                self.stdout.write(
                    f"{each.slug}: ok, {counted(result.checked, 'event')}, "
                    f"{counted(result.checkpoints_checked, 'checkpoint')}"
                )
            else:
                broken += 1
                # Signatures are checked before any event: "0 verified" would mislead there.
                # An event below a purge checkpoint is found after the walk from above it:
                # those events are not "before it".
                before = ""
                if result.checked and result.first_bad_sequence < result.from_sequence:
                    before = (
                        f" ({counted(result.checked, 'event')} from sequence "
                        f"{result.from_sequence} verified)"
                    )
                elif result.unproven_from is not None:
                    # A rewrite only a checkpoint caught: the events since the last one that
                    # matched link, but are not verified (integrity QA).
                    proven = result.unproven_from - result.from_sequence
                    if proven:
                        before = (
                            f" ({counted(proven, 'event')} verified before sequence "
                            f"{result.unproven_from})"
                        )
                elif result.checked:
                    before = f" ({counted(result.checked, 'event')} verified before it)"
                self.stdout.write(
                    f"{each.slug}: BROKEN at sequence {result.first_bad_sequence}: "
                    f"{result.reason}{before}"
                )
        if broken:
            verb = "does not" if broken == 1 else "do not"
            self.stderr.write(f"{broken} of {counted(len(tenants), 'chain')} {verb} verify")
            sys.exit(1)
        self.stdout.write(f"{counted(len(tenants), 'chain')} verified")

    def _verify(self, tenant, *, no_progress: bool):
        head = selectors.chain_head_get(tenant_id=tenant.id)
        base = selectors.chain_base(tenant_id=tenant.id)
        bar = progress_bar(
            total=max(head.sequence - base.sequence, 0),
            desc=tenant.slug,
            unit="ev",
            no_progress=no_progress,
            min_total=PROGRESS_MIN_EVENTS,
        )
        with bar:
            return ledger_verify(tenant_id=tenant.id, progress=bar.update)
