"""Admin for tenants, users and API keys.

Superusers see and manage everything. Other staff (a tenant admin given ``is_staff`` and
the model permissions) see only their own tenant's users and keys and cannot move anyone to
another tenant or grant superuser or staff rights. Every save goes through the services,
so each change is recorded in the tenant's audit trail.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import ValidationError
from django.utils import timezone
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey as LibraryAPIKey

from accounts import selectors, services
from accounts.models import ApiKey, Tenant, User

# The library registers its own (unused) key model; ours is accounts.ApiKey.
if admin.site.is_registered(LibraryAPIKey):
    admin.site.unregister(LibraryAPIKey)


def _is_tenant_staff(request) -> bool:
    return not request.user.is_superuser and request.user.tenant_id is not None


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]

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


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
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

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if _is_tenant_staff(request):
            readonly += [f for f in self._tenant_staff_readonly if obj is not None or f != "tenant"]
        return readonly

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


class ApiKeyAdminForm(forms.ModelForm):
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
class ApiKeyAdmin(APIKeyModelAdmin):
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

    def get_list_filter(self, request):
        return ["revoked", "created"] if _is_tenant_staff(request) else self.list_filter

    def get_readonly_fields(self, request, obj=None):
        readonly = [*super().get_readonly_fields(request, obj), "last_used_at"]
        if obj is not None:
            readonly.append("tenant")  # a key never changes tenant
        return readonly

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

    @admin.action(description="Revoke selected API keys (cannot be undone)")
    def revoke_selected(self, request, queryset):
        actor = services.actor_for_user(request.user)
        revoked = sum(services.api_key_revoke(api_key=key, actor=actor) for key in queryset)
        self.message_user(request, f"{revoked} API key(s) revoked.", messages.SUCCESS)

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not self.has_change_permission(request):
            actions.pop("revoke_selected", None)
        return actions
