"""Compliance staff's view of the ledger: signed checkpoints, and a check of the chain.

The event page checks one event's link (``ledger_status``); whether a tenant's chain holds
was the API's (``GET /api/v1/ledger/verify``) or ``manage.py verify_ledger``. Here the same
check as the API's default, the last ``VERIFY_MAX_EVENTS`` events with the signed
checkpoints among them, is a button on the checkpoint list, counted against
``TRACELEDGER_RATELIMIT_HEAVY`` like the API's. The whole chain stays the command's (or the
offline tool's, on an export): it can take minutes.
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import path, reverse

from accounts.models import Tenant
from accounts.ratelimits import RateLimited, check_rate
from audit.admin.events import EventViewersMixin
from audit.admin.exporting import heavy_budget_spent, heavy_read_budget
from audit.admin.list_filters import TenantFilter
from audit.admin.list_params import BadParamsNamedMixin
from audit.admin.listing import TenantScopedMixin
from audit.ledger.signing import SigningKeyMissing
from audit.ledger.verify import VERIFY_MAX_EVENTS, ledger_verify_last
from audit.models import Checkpoint
from traceledger.admin_pages import PageRangeMixin


@admin.register(Checkpoint)
class CheckpointAdmin(
    BadParamsNamedMixin, PageRangeMixin, TenantScopedMixin, EventViewersMixin, admin.ModelAdmin
):
    change_list_template = "admin/audit/checkpoint/change_list.html"
    list_display = ("sequence", "tenant", "kind", "signed_at", "key_id", "hash")
    list_display_links = None
    list_filter = (TenantFilter, "kind")
    list_select_related = ("tenant",)
    ordering = ("tenant", "-sequence", "-id")
    list_per_page = 50
    show_facets = admin.ShowFacets.NEVER

    def get_actions(self, request):
        return {}

    def changelist_view(self, request, extra_context=None):
        tenant = self._tenant(request, request.GET.get("tenant"))
        extra_context = {
            **(extra_context or {}),
            "verify_tenant": tenant,
            "verify_max_events": f"{VERIFY_MAX_EVENTS:,}",
        }
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        return [
            path(
                "verify/",
                self.admin_site.admin_view(self.verify_view),
                name="audit_checkpoint_verify",
            ),
            *super().get_urls(),
        ]

    @staticmethod
    def _tenant(request, raw: str | None) -> Tenant | None:
        """The tenant to check: the staff member's own; a superuser's choice (``tenant``)."""
        if not request.user.is_superuser:
            return Tenant.objects.filter(pk=request.user.tenant_id).first()
        if raw and raw.isdecimal():
            return Tenant.objects.filter(pk=int(raw)).first()
        return None

    def verify_view(self, request):
        """POST (CSRF-checked by admin_view): verify the tenant's last events, as a message."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        back = reverse("admin:audit_checkpoint_changelist")
        if request.method != "POST":
            self.message_user(
                request,
                "Verifying is the “Verify the chain” button of this page (a POST).",
                messages.INFO,
            )
            return HttpResponseRedirect(back)
        tenant = self._tenant(request, request.POST.get("tenant"))
        if tenant is None:
            self.message_user(
                request, "Choose a tenant first (the filter on the right).", messages.ERROR
            )
            return HttpResponseRedirect(back)
        back = f"{back}?tenant={tenant.pk}" if request.user.is_superuser else back
        try:
            check_rate(**heavy_read_budget(request))
        except RateLimited as exc:
            self.message_user(
                request,
                f"Not verified: {heavy_budget_spent()}; try again in {exc.wait:.0f} seconds.",
                messages.ERROR,
            )
            return HttpResponseRedirect(back)
        try:
            result = ledger_verify_last(tenant_id=tenant.pk, last=VERIFY_MAX_EVENTS)
        except SigningKeyMissing as exc:
            self.message_user(request, f"Not verified: {exc.public_message}", messages.ERROR)
            return HttpResponseRedirect(back)
        self.message_user(request, _outcome(tenant, result), _level(result))
        return HttpResponseRedirect(back)


def _level(result) -> int:
    if not result.ok:
        return messages.ERROR
    return messages.SUCCESS if result.checked else messages.INFO


def _outcome(tenant: Tenant, result) -> str:
    # The tenant's slug never first: the admin capitalises a message's first letter.
    if not result.ok:
        return (
            f"The chain of {tenant.slug} does NOT verify: at sequence "
            f"{result.first_bad_sequence}, {result.reason}. Keep the evidence and see "
            "docs/ledger.md."
        )
    if not result.checked:
        return f"The chain of {tenant.slug} holds no events yet: nothing to verify."
    events = "1 event" if result.checked == 1 else f"{result.checked:,} events"
    checkpoints = (
        f" and {result.checkpoints_checked} signed checkpoint(s)"
        if result.checkpoints_checked
        else " (no signed checkpoint among them yet)"
    )
    older = (
        " Older events: manage.py verify_ledger, or an export and the offline tool "
        "(docs/ledger.md)."
        if result.from_sequence > 1
        else ""
    )
    return (
        f"Verified the chain of {tenant.slug}, sequences {result.from_sequence:,} to "
        f"{result.to_sequence:,} ({events}){checkpoints}: every hash matches its event and "
        f"links to the one before.{older}"
    )
