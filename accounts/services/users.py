"""Writes for users: create, change, password, delete. Passwords never leave this module."""

from collections.abc import Iterable

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts.models import Role, Tenant, User
from accounts.services.records import previous_values
from accounts.services.tenants import tenant_members_validate
from accounts.signals import SYSTEM_ACTOR, Actor, account_changed_send


def user_create(
    *,
    tenant: Tenant,
    username: str,
    password: str,
    role: str,
    email: str = "",
    is_staff: bool = False,
    actor: Actor = SYSTEM_ACTOR,
) -> User:
    """Creates a tenant user with a role (``is_staff``: may also log in to the admin, where an
    auditor or admin browses the tenant's trail). Raises ``ValidationError`` keyed by field."""
    tenant_members_validate(tenant=tenant)
    problems = user_fields_problems(username=username, password=password, email=email, role=role)
    if problems:
        raise ValidationError(problems)
    username = User.normalize_username(username)  # NFKC, as Django stores it (fullwidth too)
    user = User(username=username, email=email, tenant=tenant, role=role, is_staff=is_staff)
    user.set_password(password)
    try:
        with transaction.atomic():
            try:
                user.full_clean(exclude=["password"])
            except ValidationError as exc:
                # The same race, seen by the case-insensitive unique constraint's check,
                # which Django reports for the whole form ("__all__"): it is the username's.
                if USERNAME_TAKEN in exc.messages:
                    raise ValidationError({"username": [USERNAME_TAKEN]}) from None
                raise
            user.save()
            _record_user_change(
                user=user,
                action="user.create",
                actor=actor,
                description=f"User {user.username} created with role {role}.",
                metadata={"role": role, "is_staff": is_staff},
            )
    except IntegrityError:
        # Another request took the name between the checks above and this insert.
        raise ValidationError({"username": [USERNAME_TAKEN]}) from None
    return user


USERNAME_TAKEN = "A user with that username already exists."


def user_fields_problems(
    *,
    username: str | None,
    password: str | None,
    email: str = "",
    role: str | None = None,
) -> dict[str, list[str]]:
    """Every reason ``user_create`` refuses these values, under each field's name, all at
    once: a client fixing a taken username should not learn of its weak password only on the
    next try. A field given as None (missing, or already refused) is not checked."""
    problems: dict[str, list[str]] = {}
    if role is not None and role not in Role.values:
        problems["role"] = [f"Must be one of {', '.join(Role.values)}."]
    if username is not None:
        username = User.normalize_username(username)  # NFKC, as Django stores it
        if _username_taken(username):
            problems["username"] = [USERNAME_TAKEN]
    if password is not None:
        try:
            # The similarity check compares with the username and email given.
            validate_password(password, user=User(username=username or "", email=email))
        except ValidationError as exc:
            problems["password"] = exc.messages
    return problems


def superuser_create(
    *, username: str, password: str, email: str = "", actor: Actor = SYSTEM_ACTOR
) -> User:
    """Creates a superuser (no tenant) and records ``user.create`` in the system tenant's
    trail: who can read every tenant's events is itself an account change worth a record."""
    with transaction.atomic():
        user = User.objects.create_superuser(username=username, email=email, password=password)
        _record_user_change(
            user=user,
            action="user.create",
            actor=actor,
            description=f"Superuser {user.username} created.",
            metadata={"role": user.role, "is_superuser": True, "is_staff": True},
        )
    return user


def _username_taken(username: str) -> bool:
    return User.objects.filter(username__iexact=username).exists()


# Fields whose change is worth an audit event (the password itself is never recorded).
USER_AUDITED_FIELDS = (
    "username",
    "email",
    "role",
    "tenant",
    "is_active",
    "is_staff",
    "is_superuser",
    "password",
    "groups",
    "user_permissions",
)


# The audited fields that hold one value, read before a change to record as "previous"
# (column names: "tenant_id"; never the password; groups and permissions are relations).
_USER_BEFORE_FIELDS = tuple(
    "tenant_id" if name == "tenant" else name
    for name in USER_AUDITED_FIELDS
    if name not in ("password", "groups", "user_permissions")
)


def user_save(
    *, user: User, created: bool, changed_fields: list[str], actor: Actor = SYSTEM_ACTOR
) -> User:
    """Saves a user edited elsewhere (the admin form) and records what changed.

    Raises ``ValidationError({"tenant": ...})`` when a user would join the system tenant
    (the admin's forms check the same with ``tenant_members_validate`` first, to show it on
    the field). A user already there can still be edited, e.g. deactivated.
    """
    if user.tenant_id is not None and (created or "tenant" in changed_fields):
        tenant_members_validate(tenant=user.tenant)
    with transaction.atomic():
        before = (
            None
            if created
            else User.objects.filter(pk=user.pk).values(*_USER_BEFORE_FIELDS).first()
        )
        user.save()
        audited = sorted(set(changed_fields) & set(USER_AUDITED_FIELDS))
        if not (created or audited):
            return user
        action = "user.create" if created else "user.update"
        if not created and "role" in audited:
            action = "user.role_change"
        metadata = {
            "role": user.role,
            "changed": audited,
            "is_active": user.is_active,
            "is_staff": user.is_staff,
            "is_superuser": user.is_superuser,
        }
        previous_tenant = before["tenant_id"] if before is not None else None
        moved = previous_tenant is not None and previous_tenant != user.tenant_id
        description = f"User {user.username} {'created' if created else 'changed'}."
        if before is not None:
            # What it was, for each audited field that holds a value (not the password).
            metadata["previous"] = previous_values(
                before=before, fields=_USER_BEFORE_FIELDS, changed=audited
            )
            if moved:
                # Not the tenant it came from: its id is no business of the new tenant's
                # (tenant isolation QA). That tenant's own trail records the departure.
                metadata["previous"].pop("tenant", None)
                description = f"User {user.username} changed: moved here from another tenant."
        # A superuser without a tenant: the system tenant's trail (tenant_id None).
        _record_user_change(
            user=user,
            action=action,
            actor=actor,
            description=description,
            metadata=metadata,
        )
        if moved:
            # Moved: the tenant it left records the departure too.
            _record_user_change(
                user=user,
                tenant_id=previous_tenant,
                action="user.update",
                actor=actor,
                description=f"User {user.username} moved to another tenant.",
                metadata={"changed": ["tenant"], "previous": {"tenant": previous_tenant}},
            )
    return user


def user_password_changed(*, user: User, actor: Actor = SYSTEM_ACTOR) -> None:
    """Records a password change made by Django's own password forms (the admin's, and a
    person's own); a superuser without a tenant in the system tenant's trail."""
    _record_user_change(
        user=user,
        action="user.update",
        actor=actor,
        description=f"Password of user {user.username} changed.",
        metadata={"role": user.role, "changed": ["password"]},
    )


def user_password_set(*, user: User, password: str, actor: Actor = SYSTEM_ACTOR) -> None:
    """Sets and saves a new password (a command's: Django's forms save their own) and
    records it as ``user_password_changed`` does."""
    with transaction.atomic():
        user.set_password(password)
        user.save(update_fields=["password"])
        user_password_changed(user=user, actor=actor)


def user_delete(*, user: User, actor: Actor = SYSTEM_ACTOR) -> None:
    """Deletes a user and records ``user.delete`` in the user's tenant trail (a superuser
    without a tenant: the system tenant's)."""
    users_delete(users=[user], actor=actor)


@transaction.atomic
def users_delete(*, users: Iterable[User], actor: Actor = SYSTEM_ACTOR) -> int:
    """Deletes each user (the admin's bulk delete), recording ``user.delete`` for each one
    after commit. Returns how many were deleted."""
    deleted = 0
    for user in users:
        # Recorded before delete() clears the pk; sent only once the deletion commits. A
        # superuser without a tenant (tenant None) lands in the system tenant's trail.
        _record_user_change(
            user=user,
            action="user.delete",
            actor=actor,
            description=f"User {user.username} deleted.",
            metadata={
                "role": user.role,
                "is_staff": user.is_staff,
                "is_superuser": user.is_superuser,
            },
        )
        user.delete()
        deleted += 1
    return deleted


def _record_user_change(
    *,
    user: User,
    action: str,
    actor: Actor,
    description: str,
    metadata: dict,
    tenant_id: int | None = None,
) -> None:
    """In the user's tenant's trail (``tenant_id``: another's), the system tenant's when
    the user has none (a superuser)."""
    account_changed_send(
        tenant_id=tenant_id if tenant_id is not None else user.tenant_id,
        action=action,
        actor=actor,
        target_id=str(user.pk),
        target_type="user",
        target_name=user.username,
        description=description,
        metadata=metadata,
    )
