"""manage.py drain_dlq [--limit N] — move dead letters from RabbitMQ into the DeadLetter table."""

from django.core.management.base import BaseCommand, CommandError
from kombu.exceptions import OperationalError as BrokerError

from audit.services.dead_letters import DRAIN_BATCH, dead_letters_drain, dlq_depth
from traceledger.queues import DLQ_NAME


class Command(BaseCommand):
    help = (
        f"Moves messages from the RabbitMQ queue {DLQ_NAME} into the DeadLetter table (shown "
        "in the admin). Each batch is acked only after it is committed; draining a message "
        "twice keeps one row."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--limit", type=int, default=None, help="move at most N messages (default: all)"
        )

    def handle(self, *args, limit: int | None, **options):
        if limit is not None and limit < 1:
            raise CommandError("--limit must be a positive number")
        waiting = dlq_depth()
        if waiting is None:
            raise CommandError(f"RabbitMQ is unreachable: cannot read {DLQ_NAME}")
        total = waiting if limit is None else min(waiting, limit)
        show_progress = total > DRAIN_BATCH

        def progress(moved: int) -> None:
            if show_progress:
                self.stderr.write(f"  {moved}/{total} moved")

        try:
            moved = dead_letters_drain(limit=limit, progress=progress)
        except BrokerError as exc:
            raise CommandError(f"RabbitMQ failed during the drain: {exc}") from exc
        self.stdout.write(f"moved {moved} dead letter(s) from {DLQ_NAME} into the DeadLetter table")
