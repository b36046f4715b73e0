"""manage.py replay_dead_letters [--all | ID ...] — republish dead letters to audit.ingest."""

from audit.management.dead_letter_command import DeadLetterCommand
from audit.services.dead_letters import dead_letters_replay


class Command(DeadLetterCommand):
    help = (
        "Republishes dead letters (ids from the admin, or --all for every new one) to "
        "audit.ingest and marks them replayed. Events already stored are dropped by the "
        "worker, so replaying twice is harmless. Run drain_dlq first."
    )
    verb, past = "replay", "replayed"

    def act(self, *, ids, actor):
        result = dead_letters_replay(ids=ids, actor=actor)
        if result.via_outbox:
            self.after = (
                f"{result.via_outbox} of them into the outbox: RabbitMQ did not confirm them; "
                "the outbox relay publishes them to audit.ingest once it is back"
            )
        return result.replayed, result.skipped_text()
