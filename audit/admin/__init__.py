"""The audit admin: events and checkpoints (read-only, for compliance staff) and dead
letters/outbox (operators).

A package because it spans two audiences; Django imports ``audit.admin`` and the imports
below register every ModelAdmin.
"""

from audit.admin.checkpoints import CheckpointAdmin
from audit.admin.events import AuditEventAdmin
from audit.admin.operations import DeadLetterAdmin, OutboxMessageAdmin

__all__ = ["AuditEventAdmin", "CheckpointAdmin", "DeadLetterAdmin", "OutboxMessageAdmin"]
