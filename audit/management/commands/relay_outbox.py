"""``manage.py relay_outbox``: republish outbox rows now (beat also runs it every 10 s)."""

from django.core.management.base import BaseCommand, CommandError

from audit.services.outbox import RELAY_CHUNK, outbox_relay


class Command(BaseCommand):
    help = (
        "Republish ingest batches parked in the outbox to RabbitMQ, oldest first, deleting "
        "each once RabbitMQ confirmed it. Exits 1 when the broker still refuses."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=RELAY_CHUNK,
            help=f"Rows claimed (FOR UPDATE SKIP LOCKED) and published per round "
            f"(default {RELAY_CHUNK}).",
        )

    def handle(self, *args, chunk_size: int, **options):
        if chunk_size < 1:
            raise CommandError("--chunk-size must be at least 1")
        result = outbox_relay(chunk_size=chunk_size)
        self.stdout.write(
            f"relayed {result.relayed} outbox batch(es); {result.remaining} remaining"
        )
        if result.failed:
            raise CommandError(
                f"RabbitMQ did not confirm {result.failed} batch(es); they stay in the outbox"
            )
