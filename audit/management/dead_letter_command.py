"""What ``replay_dead_letters`` and ``discard_dead_letters`` share: ids or ``--all`` (every
new letter), ``--actor`` (default ``cli:<login name>``), unknown ids an error that changes
nothing, and one summary line."""

from django.core.management.base import BaseCommand, CommandError

from accounts.signals import Actor
from audit.services.dead_letters import UnknownDeadLetters, dead_letter_ids_new
from traceledger.command_args import actor_name, add_actor_argument


class DeadLetterCommand(BaseCommand):
    verb = ""  # "replay": the option help and the summary line ("replayed 2 dead letter(s)")
    past = ""

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="*", type=int, metavar="ID", help="DeadLetter ids")
        parser.add_argument(
            "--all",
            dest="every_new",
            action="store_true",
            help=f"{self.verb} every dead letter that is still new",
        )
        add_actor_argument(parser, doing="doing it")

    def act(self, *, ids: list[int], actor: Actor) -> tuple[int, str]:
        """(letters acted on, why the others were skipped or ""); a line to print after the
        summary may be left in ``self.after``."""
        raise NotImplementedError

    after = ""

    def handle(self, *args, ids: list[int], every_new: bool, actor: str | None, **options):
        if every_new and ids:
            raise CommandError("give dead letter ids or --all, not both")
        if not (every_new or ids):
            raise CommandError(
                f"no dead letters named: give their ids, or --all to {self.verb} every new one"
            )
        ids = list(dict.fromkeys(ids))  # an id given twice is one dead letter
        if every_new:
            ids = dead_letter_ids_new()
            if not ids:
                self.stdout.write(f"no new dead letters to {self.verb}")
                return
        name = actor_name(actor)
        try:
            done, skipped = self.act(ids=ids, actor=Actor(id=name, type="user", name=name))
        except UnknownDeadLetters as exc:
            raise CommandError(str(exc)) from exc
        note = f" (skipped: {skipped})" if skipped else ""
        self.stdout.write(f"{self.past} {done} dead letter(s){note}")
        if self.after:
            self.stdout.write(self.after)
