"""Dead letters: from ``audit.ingest.dlq`` into the ``DeadLetter`` table, and back (replay).

Two kinds of message reach the DLQ (see ``docs/ingest-worker.md``):

* a whole Celery task message that RabbitMQ dead-lettered because the worker rejected it
  (poison batch, retries exhausted) or because it hit ``x-delivery-limit``; its reason comes
  from ``x-death`` plus a note the worker left in Redis keyed by task id;
* one event of a batch that the worker published there itself (invalid or refused by the
  database) while storing its neighbours; its reason travels in ``x-tl-*`` headers.

Both are stored with ``payload`` = the ingest task's kwargs, so a replay is a plain publish.

A package because it spans three sub-domains:

* ``recording``: the worker's side, what it leaves for the DLQ (notes, per-event letters);
* ``messages``: one dead-lettered AMQP message read into ``DeadLetter`` fields;
* ``draining``: the DLQ into the table (``dead_letters_drain``), and its depth;
* ``actions``: an operator's replay or discard of stored letters.

The names below are the ones the rest of the code imports, so no importer changed when
this became a package. A test that patches a name must patch the module that looks it up
(``draining.dead_letter_fields``, ``draining._broker_url``, ``actions.REPLAY_CHUNK``): a
patch of the package's copy changes nothing.
"""

from audit.services.dead_letters.actions import (
    UnknownDeadLetters,
    dead_letter_ids_new,
    dead_letters_discard,
    dead_letters_replay,
    dead_letters_replay_preview,
    not_new_text,
)
from audit.services.dead_letters.draining import (
    DRAIN_BATCH,
    REPEATS_KEPT,
    DrainResult,
    Repeat,
    dead_letters_drain,
    dlq_depth,
)
from audit.services.dead_letters.messages import FIRST_FAILED_HEADER, dead_letter_fields
from audit.services.dead_letters.recording import (
    NoteUnavailable,
    dead_letter_note,
    events_dead_letter,
)

__all__ = [
    "DRAIN_BATCH",
    "FIRST_FAILED_HEADER",
    "REPEATS_KEPT",
    "DrainResult",
    "NoteUnavailable",
    "Repeat",
    "UnknownDeadLetters",
    "dead_letter_fields",
    "dead_letter_ids_new",
    "dead_letter_note",
    "dead_letters_discard",
    "dead_letters_drain",
    "dead_letters_replay",
    "dead_letters_replay_preview",
    "dlq_depth",
    "events_dead_letter",
    "not_new_text",
]
