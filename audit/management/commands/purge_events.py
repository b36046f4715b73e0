"""manage.py purge_events --before DATE --tenant SLUG: the one way to remove events."""

import sys

from django.core.management.base import BaseCommand, CommandError

from accounts.signals import Actor
from audit.ledger import selectors
from audit.ledger.services import PurgeRefused, events_purge, purge_span
from audit.ledger.signing import SigningKeyMissing
from traceledger.command_args import actor_name, add_actor_argument, parse_moment


class Command(BaseCommand):
    help = (
        "Retention purge: remove a tenant's oldest events (the longest prefix of its chain "
        "received before DATE), after verifying them, and sign a 'purge' checkpoint from "
        "which verification resumes. Asks before removing anything, unless --yes; recorded "
        "as a ledger.purge event of the tenant, with --actor (default cli:<login name>) as "
        "its actor. Once committed, the purged events are removed from the search index "
        "too; what could not be removed is a warning on stderr, not a failure."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--before",
            required=True,
            metavar="DATE",
            help="ISO date (midnight UTC) or timestamp with offset",
        )
        parser.add_argument("--tenant", required=True, metavar="SLUG")
        parser.add_argument(
            "--yes", action="store_true", help="do not ask (needed when not on a terminal)"
        )
        add_actor_argument(parser, doing="purging", trail="the tenant's ledger.purge event")

    def handle(self, *args, before, tenant, yes=False, actor=None, **options):
        name = actor_name(actor)
        cutoff = parse_moment(before, option="--before", require_offset=True)
        found = selectors.tenant_by_slug(slug=tenant)
        if found is None:
            raise CommandError(f"no tenant with slug {tenant!r}")
        try:
            span = purge_span(tenant_id=found.id, before=cutoff)
            if span is not None and not yes:
                self._confirm(found.slug, span, cutoff)
            result = events_purge(
                tenant_id=found.id,
                before=cutoff,
                actor=Actor(id=name, type="user", name=name),
            )
        except PurgeRefused as exc:
            self.stderr.write(f"purge refused: {exc}")
            sys.exit(1)
        except SigningKeyMissing as exc:
            # Exit 2 like the other "could not" answers; nothing was removed.
            raise CommandError(f"cannot sign the purge checkpoint: {exc}", returncode=2) from None
        if result.removed == 0 and result.checkpoint is None:
            self.stdout.write(f"{found.slug}: nothing to purge before {cutoff.isoformat()}")
            return
        self.stdout.write(
            f"{found.slug}: removed {result.removed} events "
            f"(sequences {result.from_sequence}..{result.through_sequence}); "
            f"verification resumes at {result.through_sequence + 1}; "
            f"purge checkpoint #{result.checkpoint.pk} signed"
        )
        # What the other apps did after the commit (search: the purged events' entries and
        # documents). Something left undone is a warning, not a failure: the purge stands,
        # and the message says how it is caught up.
        for follow_up in result.follow_ups:
            if follow_up.done:
                self.stdout.write(f"{found.slug}: {follow_up.message}")
            else:
                self.stderr.write(self.style.WARNING(f"{found.slug}: {follow_up.message}"))

    def _confirm(self, slug: str, span: tuple[int, int], cutoff) -> None:
        first, last = span
        question = (
            f"Remove {last - first + 1} events of tenant {slug} (sequences {first}..{last}, "
            f"received before {cutoff.isoformat()})? This cannot be undone. [y/N] "
        )
        if not sys.stdin.isatty():
            raise CommandError(f"{question.split('?')[0]}? Run with --yes to confirm.")
        if input(question).strip().lower() not in {"y", "yes"}:
            raise CommandError("nothing was purged")
