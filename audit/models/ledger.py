from django.db import models


class ChainHead(models.Model):
    """The last link of a tenant's hash chain. Workers lock this row to append (no forks)."""

    tenant = models.OneToOneField(
        "accounts.Tenant", on_delete=models.PROTECT, primary_key=True, related_name="+"
    )
    sequence = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"chain head of tenant {self.tenant_id} at {self.sequence}"


class CheckpointKind(models.TextChoices):
    PERIODIC = "periodic"
    PURGE = "purge"


class Checkpoint(models.Model):
    """A signed statement: tenant T's chain had ``hash`` at ``sequence`` at ``signed_at``."""

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="+")
    sequence = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    signed_at = models.DateTimeField()
    signature = models.CharField(max_length=128)  # Ed25519, hex
    key_id = models.CharField(max_length=64)  # fingerprint of the public key
    kind = models.CharField(
        max_length=16, choices=CheckpointKind.choices, default=CheckpointKind.PERIODIC
    )
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["tenant", "-sequence", "-id"]
        indexes = [models.Index(fields=["tenant", "-sequence"], name="checkpoint_tenant_seq")]

    def __str__(self) -> str:
        return f"checkpoint {self.tenant_id}@{self.sequence}"
