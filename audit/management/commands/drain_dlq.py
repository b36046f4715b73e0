"""manage.py drain_dlq [--limit N] — move dead letters from RabbitMQ into the DeadLetter table.

Exit codes, for cron alerting: 0 every message taken was moved; 1 a message could not be
stored and was left in the queue (it needs a person: it will not move by itself); 2 the
drain could not run (RabbitMQ unreachable or failing mid-drain, the database unavailable,
Redis, which holds the worker's reasons, unavailable, bad input): an outage or a typo, which
the next run may get past, as ``verify_ledger``'s 2.
"""

from amqp.exceptions import AMQPError
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from kombu.exceptions import OperationalError as BrokerError

from audit.services.dead_letters import (
    DRAIN_BATCH,
    NoteUnavailable,
    dead_letters_drain,
    dlq_depth,
)
from traceledger.queues import DLQ_NAME

EXIT_LEFT_IN_QUEUE = 1
EXIT_COULD_NOT_DRAIN = 2
# kombu wraps connecting; a connection or channel lost mid-drain surfaces as amqp's own
# errors or the socket's.
BROKER_ERRORS = (BrokerError, AMQPError, OSError)


class Command(BaseCommand):
    help = (
        f"Moves messages from the RabbitMQ queue {DLQ_NAME} into the DeadLetter table (shown "
        "in the admin). Each batch is acked only after it is committed; draining a message "
        "twice keeps one row: the output counts such repeats apart from new letters and "
        "names their rows, and those already replayed or discarded (their status is kept). "
        "A message that cannot be stored is left in the queue, named, and makes the command "
        "fail after the others are moved. Exit status: 0 all moved; "
        "1 a message was left in the queue (look at it); 2 could not drain (RabbitMQ, the "
        "database or Redis unreachable, bad input)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--limit", type=int, default=None, help="move at most N messages (default: all)"
        )

    def handle(self, *args, limit: int | None, **options):
        if limit is not None and limit < 1:
            raise CommandError("--limit must be a positive number", returncode=EXIT_COULD_NOT_DRAIN)
        # Before the queue: an empty DLQ never touched the database, and a run with
        # PostgreSQL down said "moved 0", exit 0, where cron must hear exit 2 (new-user QA).
        # manage.py turns the OperationalError into "database unavailable: …", exit 2.
        connection.ensure_connection()
        waiting = dlq_depth()
        if waiting is None:
            raise CommandError(
                f"RabbitMQ is unreachable: cannot read {DLQ_NAME}", returncode=EXIT_COULD_NOT_DRAIN
            )
        total = waiting if limit is None else min(waiting, limit)
        show_progress = total > DRAIN_BATCH

        def progress(moved: int) -> None:
            if show_progress:
                self.stderr.write(f"  {moved}/{total} moved")

        left: list[str] = []

        def report_left(message_id: str, exc: Exception) -> None:
            left.append(message_id)
            self.stderr.write(f"  left in {DLQ_NAME}: {message_id}: {type(exc).__name__}: {exc}")

        try:
            result = dead_letters_drain(limit=limit, progress=progress, on_left=report_left)
        except NoteUnavailable as exc:
            raise CommandError(str(exc), returncode=EXIT_COULD_NOT_DRAIN) from exc
        except BROKER_ERRORS as exc:
            # What was committed before stays moved (acked after commit); the rest waits.
            raise CommandError(
                f"RabbitMQ failed during the drain: {type(exc).__name__}: {exc}",
                returncode=EXIT_COULD_NOT_DRAIN,
            ) from exc
        breakdown = result.breakdown()
        self.stdout.write(
            f"moved {result.moved} dead letter(s) from {DLQ_NAME} into the DeadLetter table"
            + (f": {breakdown}" if breakdown else "")
        )
        if left and len(left) == result.waiting_for_redis:
            raise CommandError(
                f"{len(left)} message(s) were left in {DLQ_NAME}, and the drain stopped: Redis "
                "does not answer, and it holds why the worker rejected them; run drain_dlq "
                "again once Redis is back",
                returncode=EXIT_COULD_NOT_DRAIN,
            )
        if left:
            # A non-zero exit: an unattended drain (cron) must make someone look.
            raise CommandError(
                f"{len(left)} message(s) could not be stored and were left in {DLQ_NAME} "
                f"(see the log): {', '.join(left[:10])}{', …' if len(left) > 10 else ''}",
                returncode=EXIT_LEFT_IN_QUEUE,
            )
