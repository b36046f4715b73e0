from audit.models.dead_letters import DeadLetter, DeadLetterStatus
from audit.models.events import AuditEvent, Outcome, Severity
from audit.models.ledger import ChainHead, Checkpoint
from audit.models.outbox import OutboxMessage

__all__ = [
    "AuditEvent",
    "ChainHead",
    "Checkpoint",
    "DeadLetter",
    "DeadLetterStatus",
    "OutboxMessage",
    "Outcome",
    "Severity",
]
