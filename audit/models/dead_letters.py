from django.db import models


class DeadLetterStatus(models.TextChoices):
    NEW = "new"
    REPLAYED = "replayed"
    DISCARDED = "discarded"


class DeadLetter(models.Model):
    """A message drained from ``audit.ingest.dlq``, kept for people to inspect and replay."""

    # The Celery task id (or AMQP message id, or a digest of the body): draining the same
    # message twice keeps one row. A repeat that failed later than the row moves
    # last_failed_at, adds its attempts and fills a missing first_failed_at; the status
    # stays (see _fold_repeat).
    message_id = models.CharField(max_length=255, unique=True)
    tenant_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    task_name = models.CharField(max_length=255, blank=True, default="")
    payload = models.JSONField()
    headers = models.JSONField(default=dict, blank=True)
    event_count = models.PositiveIntegerField(default=0)
    reason = models.CharField(max_length=255, blank=True, default="")
    exception = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    original_queue = models.CharField(max_length=255, blank=True, default="")
    first_failed_at = models.DateTimeField(null=True, blank=True)
    last_failed_at = models.DateTimeField(null=True, blank=True)
    drained_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(
        max_length=16, choices=DeadLetterStatus.choices, default=DeadLetterStatus.NEW
    )
    status_changed_at = models.DateTimeField(null=True, blank=True)
    status_changed_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["-drained_at", "-id"]
        indexes = [models.Index(fields=["status", "-drained_at"], name="deadletter_status")]

    def __str__(self) -> str:
        return f"dead letter #{self.pk}: {self.reason or 'unknown reason'}"
