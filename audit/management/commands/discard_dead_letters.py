"""manage.py discard_dead_letters [--all | ID ...] — mark dead letters discarded."""

import getpass

from django.core.management.base import BaseCommand, CommandError

from accounts.signals import Actor
from audit.services.dead_letters import (
    UnknownDeadLetters,
    dead_letter_ids_new,
    dead_letters_discard,
)


class Command(BaseCommand):
    help = (
        "Marks dead letters (ids from the admin, or --all for every new one) discarded: they "
        "stay in the table for the record and can no longer be replayed. Only new letters are "
        "discarded; unknown ids are an error and nothing is discarded. Irreversible, and "
        "--all asks no question: replay what can be stored first."
    )

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="*", type=int, metavar="ID", help="DeadLetter ids")
        parser.add_argument(
            "--all",
            dest="discard_all",
            action="store_true",
            help="discard every dead letter that is still new",
        )
        parser.add_argument(
            "--actor",
            default=None,
            help="who is discarding, recorded in the system audit trail (default: cli:<user>)",
        )

    def handle(self, *args, ids: list[int], discard_all: bool, actor: str | None, **options):
        if discard_all == bool(ids):
            raise CommandError("give dead letter ids or --all (not both)")
        ids = list(dict.fromkeys(ids))  # an id given twice is one dead letter
        if discard_all:
            ids = dead_letter_ids_new()
            if not ids:
                self.stdout.write("no new dead letters to discard")
                return
        name = actor or f"cli:{getpass.getuser()}"
        try:
            discarded = dead_letters_discard(ids=ids, actor=Actor(id=name, type="user", name=name))
        except UnknownDeadLetters as exc:
            raise CommandError(str(exc)) from exc
        # Unknown ids raise above, so every id not discarded was no longer new.
        not_new = len(ids) - discarded
        note = f" (skipped: {not_new} no longer new (replayed or discarded already))"
        self.stdout.write(f"discarded {discarded} dead letter(s){note if not_new else ''}")
