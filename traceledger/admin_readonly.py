"""Admin pages that show what only the services write (events, checkpoints, the outbox)."""


class ReadOnlyAdminMixin:
    """No add, change or delete for anyone, superusers included (PostgreSQL refuses changes
    to the append-only tables too)."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
