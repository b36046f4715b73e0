from django.db import models


class OutboxMessage(models.Model):
    """A batch accepted while RabbitMQ was unavailable; the relay publishes and deletes it.

    ``payload`` is the ingest task's keyword arguments exactly as they would have been
    published, so relaying is a plain republish.
    """

    tenant_id = models.BigIntegerField()
    payload = models.JSONField()
    event_count = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["id"]
        verbose_name = "outbox message"

    def __str__(self) -> str:
        return f"outbox #{self.pk} ({self.event_count} events)"
