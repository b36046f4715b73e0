"""manage.py replay_dead_letters [--all | ID ...] — republish dead letters to audit.ingest."""

import getpass

from django.core.management.base import BaseCommand, CommandError

from accounts.signals import Actor
from audit.services.dead_letters import (
    UnknownDeadLetters,
    dead_letter_ids_new,
    dead_letters_replay,
)


class Command(BaseCommand):
    help = (
        "Republishes dead letters (ids from the admin, or --all for every new one) to "
        "audit.ingest and marks them replayed. Events already stored are dropped by the "
        "worker, so replaying twice is harmless. Run drain_dlq first."
    )

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="*", type=int, metavar="ID", help="DeadLetter ids")
        parser.add_argument(
            "--all",
            dest="replay_all",
            action="store_true",
            help="replay every dead letter that is still new",
        )
        parser.add_argument(
            "--actor",
            default=None,
            help="who is replaying, recorded in the system audit trail (default: cli:<user>)",
        )

    def handle(self, *args, ids: list[int], replay_all: bool, actor: str | None, **options):
        if replay_all == bool(ids):
            raise CommandError("give dead letter ids or --all (not both)")
        ids = list(dict.fromkeys(ids))  # an id given twice is one dead letter
        if replay_all:
            ids = dead_letter_ids_new()
            if not ids:
                self.stdout.write("no new dead letters to replay")
                return
        name = actor or f"cli:{getpass.getuser()}"
        try:
            result = dead_letters_replay(ids=ids, actor=Actor(id=name, type="user", name=name))
        except UnknownDeadLetters as exc:
            raise CommandError(str(exc)) from exc
        skipped = result.skipped_text()
        note = f" (skipped: {skipped})" if skipped else ""
        self.stdout.write(f"replayed {result.replayed} dead letter(s){note}")
