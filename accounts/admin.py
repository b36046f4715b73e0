"""Admin for tenants, users and API keys.

Superusers see and manage everything. Other staff (a tenant admin given ``is_staff`` and
the model permissions) see only their own tenant's users and keys and cannot move anyone to
another tenant or grant superuser or staff rights, nor change or delete another user who
has admin access or a permission they lack (its password would be theirs to set). Every
save and delete goes through the services, so each change is recorded in the tenant's
audit trail.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey as LibraryAPIKey
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts import selectors, services
from accounts.models import ApiKey, Role, Scope, Tenant, User
from traceledger.admin_confirm import confirm_first
from traceledger.admin_lookups import NoPatternLookupsMixin
from traceledger.admin_pages import PageRangeMixin
from traceledger.admin_selection import ValidSelectionMixin

# The library registers its own (unused) key model; ours is accounts.ApiKey.
if admin.site.is_registered(LibraryAPIKey):
    admin.site.unregister(LibraryAPIKey)

# simplejwt's own admins show every stored refresh token in full, of every tenant's users
# and of superusers: anyone with their view permission could refresh it and act as its
# owner. Sessions end by deactivating the user (docs/accounts.md), so no page needs them.
for _model in (OutstandingToken, BlacklistedToken):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


class SuperuserGroupAdmin(DjangoGroupAdmin):
    """Groups are global, not a tenant's: tenant staff given group permissions could
    otherwise add permissions to a group they are in, or to another tenant's users' groups."""

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return self.has_module_permission(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self.has_module_permission(request)


if admin.site.is_registered(Group):
    admin.site.unregister(Group)
admin.site.register(Group, SuperuserGroupAdmin)


class _TenantAsTextMixin:
    """A read-only tenant shown as its slug, not as Django's link to the tenant's page, for
    whoever cannot open that page (tenant staff: tenants are the superuser's): the link
    answered a bare 403."""

    @admin.display(description="Tenant")
    def tenant_text(self, obj) -> str:
        return str(obj.tenant) if obj is not None and obj.tenant_id else "-"

    def tenant_as_text(self, request, obj, readonly) -> list:
        """``readonly`` (the admin's whole list, so called last by its
        ``get_readonly_fields``) with the tenant shown as text where its link cannot open."""
        if obj is None or "tenant" not in readonly:
            return list(readonly)
        if self.admin_site._registry[Tenant].has_view_permission(request, obj.tenant):
            return list(readonly)
        return _tenant_renamed(readonly)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if "tenant_text" not in self.get_readonly_fields(request, obj):
            return fieldsets
        return [
            (name, {**options, "fields": _tenant_renamed(options["fields"])})
            for name, options in fieldsets
        ]


def _tenant_renamed(fields) -> list:
    """``fields`` (nested as a fieldset's rows may be) with ``tenant_text`` for ``tenant``."""
    return [
        _tenant_renamed(field)
        if isinstance(field, list | tuple)
        else ("tenant_text" if field == "tenant" else field)
        for field in fields
    ]


def _is_tenant_staff(request) -> bool:
    return not request.user.is_superuser and request.user.tenant_id is not None


def _beyond_reach(actor, user) -> bool:
    """Whether ``user`` holds what tenant staff ``actor`` could not grant: admin access, or a
    permission ``actor`` lacks. Changing such a user, their password above all, would let
    ``actor`` log in as them and use those rights; only a superuser grants and manages them."""
    if user.pk == actor.pk:
        return False
    return user.is_staff or bool(user.get_all_permissions() - actor.get_all_permissions())


class _TenantAdminAccessMixin:
    """A tenant's ``admin`` with admin access manages that tenant's users and keys (the
    README's role table), without a superuser having to grant model permissions by hand;
    the querysets and read-only fields below keep them inside their tenant."""

    def _tenant_admin(self, request) -> bool:
        user = request.user
        return bool(user.is_active and user.is_staff and user.tenant_id and user.role == Role.ADMIN)

    def has_module_permission(self, request) -> bool:
        return self._tenant_admin(request) or super().has_module_permission(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return self._tenant_admin(request) or super().has_view_permission(request, obj)

    def has_add_permission(self, request) -> bool:
        return self._tenant_admin(request) or super().has_add_permission(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return self._tenant_admin(request) or super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._tenant_admin(request) or super().has_delete_permission(request, obj)


# --- forms: the services' rules, shown on the field -----------------------------------------
def _field_check(field: str, check, **kwargs) -> None:
    """Runs a service validator; its error (keyed by field) becomes this form field's."""
    try:
        check(**kwargs)
    except ValidationError as exc:
        raise forms.ValidationError(exc.message_dict.get(field) or exc.messages) from exc


class _NoSystemTenantMixin:
    """Nobody joins the system tenant (``services.tenant_members_validate``)."""

    def clean_tenant(self):
        tenant = self.cleaned_data.get("tenant")
        if "tenant" in self.changed_data:
            _field_check("tenant", services.tenant_members_validate, tenant=tenant)
        return tenant


class TenantAdminForm(forms.ModelForm):
    class Meta:
        model = Tenant
        fields = ["slug", "name"]

    def clean_slug(self):
        slug = self.cleaned_data.get("slug")
        if self.instance.pk is None:  # read-only afterwards
            _field_check("slug", services.tenant_slug_validate, slug=slug)
        return slug

    def clean_name(self):
        name = self.cleaned_data.get("name")
        _field_check("name", services.tenant_name_validate, name=name or "")
        return name


@admin.register(Tenant)
class TenantAdmin(NoPatternLookupsMixin, admin.ModelAdmin):
    form = TenantAdminForm
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]

    def get_readonly_fields(self, request, obj=None):
        # Scripts, API callers (tenant=<slug>) and JWT claims name a tenant by its slug.
        return ["slug"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        services.tenant_save(
            tenant=obj,
            created=not change,
            changed_fields=list(form.changed_data),
            actor=services.actor_for_user(request.user),
        )

    def has_module_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_add_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # tenants own an append-only trail; PROTECT keeps them anyway


class _TenantUnlessSuperuserMixin:
    """The database refuses a user without a tenant unless a superuser; the add form has no
    superuser box, so the check (which Django skips for fields missing from a form) is here,
    on the field."""

    def clean(self):
        cleaned = super().clean()
        is_superuser = cleaned.get("is_superuser", getattr(self.instance, "is_superuser", False))
        # A tenant refused by its own check (the system tenant) already says why: adding
        # "choose one" after it would contradict the choice the user did make.
        refused = self.has_error("tenant")
        if (
            "tenant" in self.fields
            and not cleaned.get("tenant")
            and not is_superuser
            and not refused
        ):
            self.add_error(
                "tenant", "Every user except a superuser belongs to a tenant: choose one."
            )
        return cleaned


class UserAdminChangeForm(_TenantUnlessSuperuserMixin, _NoSystemTenantMixin, UserChangeForm):
    pass


class UserAdminCreationForm(
    _TenantUnlessSuperuserMixin, _NoSystemTenantMixin, AdminUserCreationForm
):
    pass


@admin.register(User)
class UserAdmin(
    _TenantAsTextMixin,
    ValidSelectionMixin,
    PageRangeMixin,
    _TenantAdminAccessMixin,
    NoPatternLookupsMixin,
    DjangoUserAdmin,
):
    form = UserAdminChangeForm
    add_form = UserAdminCreationForm
    list_display = ["username", "tenant", "role", "email", "is_active", "is_staff"]
    list_filter = ["role", "is_active", "is_staff", "is_superuser", "tenant"]
    fieldsets = (
        *DjangoUserAdmin.fieldsets,
        ("TraceLedger", {"fields": ("tenant", "role")}),
    )
    add_fieldsets = (
        *DjangoUserAdmin.add_fieldsets,
        ("TraceLedger", {"fields": ("tenant", "role")}),
    )
    _tenant_staff_readonly = ("tenant", "is_superuser", "is_staff", "groups", "user_permissions")

    def get_queryset(self, request):
        return selectors.user_list_for(user=request.user)

    def get_list_filter(self, request):
        if _is_tenant_staff(request):
            return ["role", "is_active", "is_staff"]
        return self.list_filter

    # Django's password form asks has_change_permission too, so neither is reachable.
    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and _is_tenant_staff(request) and _beyond_reach(request.user, obj):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and _is_tenant_staff(request) and _beyond_reach(request.user, obj):
            return False
        return super().has_delete_permission(request, obj)

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if _is_tenant_staff(request):
            readonly += [f for f in self._tenant_staff_readonly if obj is not None or f != "tenant"]
        return self.tenant_as_text(request, obj, readonly)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if _is_tenant_staff(request) and obj is None and "tenant" in form.base_fields:
            field = form.base_fields["tenant"]
            field.queryset = Tenant.objects.filter(pk=request.user.tenant_id)
            field.initial = request.user.tenant_id
            field.required = True
        return form

    def user_change_password(self, request, id, form_url=""):
        response = super().user_change_password(request, id, form_url)
        # Django's own password form saved the user; a redirect means it succeeded.
        if request.method == "POST" and response.status_code == 302:
            user = self.get_object(request, unquote(id))
            if user is not None:
                services.user_password_changed(
                    user=user, actor=services.actor_for_user(request.user)
                )
        return response

    def save_model(self, request, obj, form, change):
        if _is_tenant_staff(request):
            obj.tenant_id = request.user.tenant_id
        services.user_save(
            user=obj,
            created=not change,
            changed_fields=list(form.changed_data),
            actor=services.actor_for_user(request.user),
        )

    def delete_model(self, request, obj):
        services.user_delete(user=obj, actor=services.actor_for_user(request.user))

    def delete_queryset(self, request, queryset):
        services.users_delete(users=list(queryset), actor=services.actor_for_user(request.user))


class ApiKeyAdminForm(_NoSystemTenantMixin, forms.ModelForm):
    # Boxes to tick instead of the array field's comma-separated text, which named the
    # allowed values only in its error ("admin is not one of the available choices") and
    # took "read,read".
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="ingest: post events; read: list, search, export and verify the ledger.",
    )

    class Meta:
        model = ApiKey
        fields = ["name", "tenant", "scopes", "expiry_date", "revoked", "last_used_at"]

    def clean_expiry_date(self):
        # A key created already expired is shown once and never works; moving a key's expiry
        # into the past is a revocation in disguise, and the revoke action records it as one.
        expiry_date = self.cleaned_data.get("expiry_date")
        if (
            expiry_date is not None
            and "expiry_date" in self.changed_data
            and expiry_date <= timezone.now()
        ):
            raise forms.ValidationError(
                "The expiry date must be in the future. To stop a key now, revoke it."
            )
        return expiry_date


@admin.register(ApiKey)
class ApiKeyAdmin(
    _TenantAsTextMixin,
    ValidSelectionMixin,
    PageRangeMixin,
    _TenantAdminAccessMixin,
    NoPatternLookupsMixin,
    APIKeyModelAdmin,
):
    form = ApiKeyAdminForm
    list_display = [
        "prefix",
        "name",
        "tenant",
        "scopes",
        "created",
        "expiry_date",
        "_has_expired",
        "revoked",
        "last_used_at",
    ]
    list_filter = ["revoked", "tenant", "created"]
    search_fields = ["name", "prefix"]
    actions = ["revoke_selected"]

    def get_queryset(self, request):
        return selectors.api_key_list_for(user=request.user)

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        # Django's "API key with ID “<prefix>.sha512$$<hash>” doesn't exist. Perhaps it was
        # deleted?" repeated the key's stored hash, which the id holds, and a key of another
        # tenant exists (admin QA). The public prefix only, as everywhere else.
        prefix = unquote(object_id).split(".", 1)[0]
        self.message_user(
            request, f"No API key {prefix}… among the keys you can see.", messages.WARNING
        )
        return HttpResponseRedirect(reverse("admin:index", current_app=self.admin_site.name))

    def get_list_filter(self, request):
        return ["revoked", "created"] if _is_tenant_staff(request) else self.list_filter

    fields = ("name", "prefix", "tenant", "scopes", "expiry_date", "revoked", "last_used_at")

    def get_readonly_fields(self, request, obj=None):
        # Revoking is the list's action, which asks first; a checkbox here revoked at once.
        readonly = [*super().get_readonly_fields(request, obj), "last_used_at", "revoked"]
        if obj is not None:
            readonly.append("tenant")  # a key never changes tenant
        # The library lists "revoked" too (shown twice).
        return self.tenant_as_text(request, obj, dict.fromkeys(readonly))

    def has_change_permission(self, request, obj=None) -> bool:
        # A revoked key is history: its page is a view, nothing left to edit or save.
        if obj is not None and obj.revoked:
            return False
        return super().has_change_permission(request, obj)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if _is_tenant_staff(request) and "tenant" in form.base_fields:
            field = form.base_fields["tenant"]
            field.queryset = Tenant.objects.filter(pk=request.user.tenant_id)
            field.initial = request.user.tenant_id
        return form

    def save_model(self, request, obj, form, change):
        if _is_tenant_staff(request):
            obj.tenant_id = request.user.tenant_id
        try:
            _, key = services.api_key_save(
                api_key=obj, created=not change, actor=services.actor_for_user(request.user)
            )
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return
        if key is not None:
            self.message_user(
                request,
                f"The API key for {obj.name} is: {key} — store it somewhere safe now: "
                "it is not stored and will not be shown again.",
                messages.WARNING,
            )

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead: a deleted key leaves audit events pointing nowhere

    @confirm_first(
        description="Revoke selected API keys (cannot be undone)",
        question="Revoke these API keys? Each one stops working at once, in every process; "
        "a revoked key cannot be restored.",
        button="Yes, revoke them",
    )
    def revoke_selected(self, request, queryset):
        actor = services.actor_for_user(request.user)
        # One transaction: all or none, and one tenant's revoke records share one message, so
        # they chain in order (one message per key could be stored in any order).
        with transaction.atomic():
            revoked = sum(services.api_key_revoke(api_key=key, actor=actor) for key in queryset)
        self.message_user(request, f"{revoked} API key(s) revoked.", messages.SUCCESS)

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not self.has_change_permission(request):
            actions.pop("revoke_selected", None)
        return actions


@admin.site.admin_view
def own_password_change(request):
    """The admin's "Change password" for one's own account, recorded like the user page's
    (Django's view has no hook; ``traceledger/urls.py`` routes it here first)."""
    response = admin.site.password_change(request)
    if request.method == "POST" and response.status_code == 302:
        services.user_password_changed(
            user=request.user, actor=services.actor_for_user(request.user)
        )
    return response
