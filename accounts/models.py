from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Lower
from rest_framework_api_key.models import AbstractAPIKey

# The tenant of TraceLedger's own records (dead-letter replays, drains, account changes of
# tenant-less superusers), created by TraceLedger itself. Nobody may log in, hold an API key
# or create it by hand there: a key of it could post events indistinguishable from the
# operators' own records (``accounts.services`` refuses; authentication refuses a key that
# predates that rule).
SYSTEM_TENANT_SLUG = "system"


class Tenant(models.Model):
    """An organisation whose audit trail is kept apart from every other's."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Role(models.TextChoices):
    ADMIN = "admin", "Tenant admin"
    AUDITOR = "auditor", "Auditor"
    INGEST = "ingest", "Ingest"


class Scope(models.TextChoices):
    INGEST = "ingest", "Post events"
    READ = "read", "Read, search and export events"


class UserManager(DjangoUserManager):
    def get_by_natural_key(self, username):
        # Usernames are unique ignoring case (the constraint below), so "Ada" logs in as
        # "ada": people do not remember the case they were given, and two accounts whose
        # names differ only in case would read as one person in the audit trail.
        # NFKC first, as Django stores names: a fullwidth "ADA" is "ADA".
        return self.get(username__iexact=self.model.normalize_username(username))


class User(AbstractUser):
    """A person. Belongs to one tenant with one role; superusers are global."""

    objects = UserManager()

    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.PROTECT, related_name="users"
    )
    role = models.CharField(max_length=16, choices=Role.choices, blank=True, default="")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(is_superuser=True) | models.Q(tenant__isnull=False),
                name="user_has_tenant_unless_superuser",
                violation_error_message="Every user except a superuser belongs to a tenant.",
            ),
            models.UniqueConstraint(
                Lower("username"),
                name="user_username_unique_ignoring_case",
                violation_error_message="A user with that username already exists.",
            ),
        ]


class ApiKey(AbstractAPIKey):
    """A service's key: hashed at rest by djangorestframework-api-key, bound to one tenant."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="api_keys")
    scopes = ArrayField(models.CharField(max_length=16, choices=Scope.choices))
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"
