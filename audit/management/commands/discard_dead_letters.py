"""manage.py discard_dead_letters [--all | ID ...] — mark dead letters discarded."""

from audit.management.dead_letter_command import DeadLetterCommand
from audit.services.dead_letters import dead_letters_discard, not_new_text


class Command(DeadLetterCommand):
    help = (
        "Marks dead letters (ids from the admin, or --all for every new one) discarded: they "
        "stay in the table for the record and can no longer be replayed. Only new letters are "
        "discarded; unknown ids are an error and nothing is discarded. Irreversible, and "
        "--all asks no question: replay what can be stored first."
    )
    verb, past = "discard", "discarded"

    def act(self, *, ids, actor):
        discarded = dead_letters_discard(ids=ids, actor=actor)
        # Unknown ids raise, so every id not discarded was no longer new.
        return discarded, not_new_text(len(ids) - discarded)
