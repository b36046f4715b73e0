"""``manage.py relay_outbox``: republish outbox rows now (beat also runs it every 10 s).

Exit codes, for cron alerting: 0 all relayed; 1 RabbitMQ still refuses (the rows stay); 2
the relay could not run (the database unavailable, bad input), as ``drain_dlq``'s 2.
"""

from django.core.management.base import BaseCommand, CommandError

from audit.selectors import outbox_backlog
from audit.services.outbox import RELAY_CHUNK, outbox_relay
from traceledger.command_args import add_progress_argument, progress_bar

EXIT_BROKER_REFUSES = 1
# Also manage.py's own exit when PostgreSQL cannot be reached (a one-line message).
EXIT_COULD_NOT_RELAY = 2


class Command(BaseCommand):
    help = (
        "Republish ingest batches parked in the outbox to RabbitMQ, oldest first, deleting "
        "each once RabbitMQ confirmed it. On a terminal, an outbox of more than one chunk "
        "shows a progress bar on stderr. Exit status: 0 all relayed; 1 RabbitMQ still "
        "refuses (with its reason; the rows stay in the outbox); 2 could not relay (the "
        "database unavailable, bad input)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=RELAY_CHUNK,
            help=f"Rows claimed (FOR UPDATE SKIP LOCKED) and published per round "
            f"(default {RELAY_CHUNK}).",
        )
        add_progress_argument(parser)

    def handle(self, *args, chunk_size: int, no_progress: bool = False, **options):
        if chunk_size < 1:
            # Not 1, which says "RabbitMQ still refuses" to cron: a typo is argparse's 2.
            raise CommandError("--chunk-size must be at least 1", returncode=EXIT_COULD_NOT_RELAY)
        bar = progress_bar(
            total=outbox_backlog()["messages"],
            desc="outbox",
            unit="batch",
            no_progress=no_progress,
            min_total=chunk_size + 1,
        )
        with bar:
            result = outbox_relay(chunk_size=chunk_size, progress=bar.update)
        self.stdout.write(
            f"relayed {result.relayed} outbox batch(es); {result.remaining} remaining"
        )
        if result.failed:
            raise CommandError(
                f"RabbitMQ did not confirm {result.failed} batch(es) ({result.error}); they "
                "stay in the outbox",
                returncode=EXIT_BROKER_REFUSES,
            )
