"""Audit events in the admin: strictly read-only, tenant-scoped, fast on millions of rows."""

import json
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db.models import Case, IntegerField, Value, When
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from accounts.models import Role, Tenant
from accounts.principal import principal_for_user
from audit import ports
from audit.admin.access_log import event_read_record, list_read_record
from audit.admin.exporting import ExportActionsMixin
from audit.admin.ledger_status import ledger_status
from audit.admin.list_filters import (
    AccessRecordsFilter,
    ActionPrefixFilter,
    ActorIdFilter,
    ActorTypeFilter,
    EventIdFilter,
    OccurredRangeFilter,
    TargetIdFilter,
    TargetTypeFilter,
    TenantFilter,
)
from audit.admin.list_params import BadParamsNamedMixin
from audit.admin.listing import BoundedDatesQuerySet, EstimatedCountPaginator, EventChangeList
from audit.models import AuditEvent, Severity
from audit.selectors import event_queryset
from traceledger.admin_pages import PageRangeMixin
from traceledger.admin_readonly import ReadOnlyAdminMixin
from traceledger.admin_selection import ValidSelectionMixin
from traceledger.query_guard import nul_query_handled

# Searches matching at most this many events are listed by id (see get_search_results).
SEARCH_ID_CAP = 2000

# Severities from least to most severe: the severity column sorts by this rank, not by name
# (alphabetically "critical" < "info" < "notice" < "warning").
SEVERITY_RANK = (Severity.INFO, Severity.NOTICE, Severity.WARNING, Severity.CRITICAL)
SEVERITY_ORDER = Case(
    *(When(severity=severity, then=Value(rank)) for rank, severity in enumerate(SEVERITY_RANK)),
    default=Value(len(SEVERITY_RANK)),
    output_field=IntegerField(),
)

# Staff of a tenant with one of these roles browse their tenant's events (compliance staff).
EVENT_VIEWER_ROLES = frozenset({Role.AUDITOR, Role.ADMIN})


def can_view_events(user) -> bool:
    if not (user.is_active and user.is_staff):
        return False
    if user.is_superuser:
        return True
    return user.tenant_id is not None and (
        user.role in EVENT_VIEWER_ROLES or user.has_perm("audit.view_auditevent")
    )


class EventViewersMixin(ReadOnlyAdminMixin):
    """Strictly read-only, for whoever may see the tenant's events (``can_view_events``)."""

    def has_view_permission(self, request, obj=None) -> bool:
        return can_view_events(request.user)

    def has_module_permission(self, request) -> bool:
        return can_view_events(request.user)


def search_not_run(exc: ValidationError) -> str:
    return f"Search not run: {' '.join(exc.messages)}"


def _swap(fields, old: str, new: str) -> tuple:
    return tuple(new if field == old else field for field in fields)


def exact(value: str):
    """``value`` as stored, its leading or trailing spaces made visible: ``" lead"`` and
    ``"lead"`` are two ids, which the filters tell apart, yet the page showed both alike
    (admin QA). Marked only when it has such spaces (the class is styled in the templates)."""
    if value == value.strip():
        return value
    return format_html(
        '<span class="tl-exact" title="with leading or trailing spaces">{}</span>', value
    )


def _exact_field(name: str):
    """A read-only field of the event page that shows ``name``'s value with ``exact``."""

    @admin.display(description=AuditEvent._meta.get_field(name).verbose_name)
    def show(self, obj: AuditEvent):
        return exact(getattr(obj, name))

    return show


@admin.register(AuditEvent)
class AuditEventAdmin(
    BadParamsNamedMixin,
    ValidSelectionMixin,
    PageRangeMixin,
    ExportActionsMixin,
    EventViewersMixin,
    admin.ModelAdmin,
):
    list_display = (
        "occurred_at",
        "tenant",
        "actor_display",
        "action",
        "target_display",
        "outcome",
        "severity_display",
    )
    list_display_links = ("occurred_at",)
    list_filter = (
        TenantFilter,
        "outcome",
        "severity",
        ActionPrefixFilter,
        ActorTypeFilter,
        ActorIdFilter,
        TargetTypeFilter,
        TargetIdFilter,
        EventIdFilter,
        OccurredRangeFilter,
        AccessRecordsFilter,
    )
    list_select_related = ("tenant",)
    date_hierarchy = "occurred_at"
    # Any search text goes to audit.ports.event_search (get_search_results), never icontains.
    search_fields = ("description",)
    search_help_text = "Full-text search over action, actor, target, description and metadata."
    ordering = ("-occurred_at", "-id")
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 50
    # "Show all" (on one page) is offered only up to this count, which is then exact
    # (listing.EXACT_COUNT_LIMIT is above it), so the link really shows all.
    list_max_show_all = 500
    # Facet counts are one COUNT per filter choice over the filtered set: never on this table.
    show_facets = admin.ShowFacets.NEVER
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "tenant",
                    "event_id_exact",
                    "occurred_at",
                    "received_at",
                    "stored_at",
                    "action",
                    "outcome",
                    "severity",
                    "description",
                )
            },
        ),
        ("Actor", {"fields": ("actor_type_exact", "actor_id_exact", "actor_name", "same_actor")}),
        (
            "Target",
            {"fields": ("target_type_exact", "target_id_exact", "target_name", "same_target")},
        ),
        ("Request", {"fields": ("source_ip", "user_agent", "submitted_by_unchained")}),
        ("Metadata", {"fields": ("metadata_pretty",)}),
        ("Ledger", {"fields": ("sequence", "prev_hash", "hash", "verification")}),
    )
    event_id_exact = _exact_field("event_id")
    actor_type_exact = _exact_field("actor_type")
    actor_id_exact = _exact_field("actor_id")
    target_type_exact = _exact_field("target_type")
    target_id_exact = _exact_field("target_id")
    readonly_fields = (
        *(field for fieldset in fieldsets for field in fieldset[1]["fields"]),
        "tenant_plain",
    )

    def get_fieldsets(self, request, obj=None):
        # Django links a read-only foreign key to the related admin page whoever looks:
        # tenant staff, who may not view tenants, got a bare 403 from that link.
        fieldsets = super().get_fieldsets(request, obj)
        tenant_admin = self.admin_site._registry.get(Tenant)
        if tenant_admin is not None and tenant_admin.has_view_permission(request):
            return fieldsets
        return [
            (name, {**options, "fields": _swap(options["fields"], "tenant", "tenant_plain")})
            for name, options in fieldsets
        ]

    @admin.display(description="tenant")
    def tenant_plain(self, obj) -> str:
        return str(obj.tenant)

    # Beside "verified": the verification does not cover this field (docs/ledger.md §2).
    @admin.display(description="submitted by (not in the hash chain)")
    def submitted_by_unchained(self, obj) -> str:
        return obj.submitted_by

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def get_changelist(self, request, **kwargs):
        return EventChangeList

    # --- tenant scoping: the read selector decides, as for the API ---

    def get_queryset(self, request: HttpRequest):
        queryset = event_queryset(principal=principal_for_user(request.user))
        return BoundedDatesQuerySet(model=queryset.model, query=queryset.query, using=queryset.db)

    def get_search_results(self, request, queryset, search_term):
        search_term = search_term.strip()
        if not search_term:
            return queryset, False
        try:
            matches = ports.event_search(queryset, search_term)
        except ValidationError as exc:  # a text the search backend cannot parse
            self.message_user(request, search_not_run(exc), messages.ERROR)
            return queryset.none(), False
        # PostgreSQL cannot estimate how many rows a full-text match keeps, so for "newest
        # first, LIMIT 50" it walks the time index and tests every row: seconds for a rare
        # term (a request id) on a big table. Fetch up to SEARCH_ID_CAP matching ids without
        # an order first (a GIN bitmap scan); if that is all of them, list just those ids.
        # More matches means a common term, for which walking the time index is the fast plan.
        ids = list(matches.order_by().values_list("pk", flat=True)[: SEARCH_ID_CAP + 1])
        if len(ids) <= SEARCH_ID_CAP:
            return queryset.filter(pk__in=ids), False
        return matches, False

    def search_refusal(self, search_term: str) -> str | None:
        """Why the search box's text would not be searched (``get_search_results`` shows an
        empty list and this reason), or None. The search port checks the text when called,
        not when the queryset is evaluated, so an empty queryset is enough to ask."""
        search_term = search_term.strip()
        if not search_term:
            return None
        try:
            ports.event_search(AuditEvent.objects.none(), search_term)
        except ValidationError as exc:
            return search_not_run(exc)
        return None

    # --- reads are recorded (audit the auditors), like the API's ---

    @nul_query_handled
    def changelist_view(self, request, extra_context=None):
        # BadParamsNamedMixin answers unusable parameters first, with a redirect (not recorded).
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if response.status_code == 200 and changelist is not None:
            list_read_record(request=request, changelist=changelist)
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        event = getattr(response, "context_data", {}).get("original")
        if response.status_code == 200 and event is not None:
            event_read_record(request=request, event=event)
        return response

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        # Django says "… doesn't exist. Perhaps it was deleted?": nothing is ever deleted
        # from this append-only trail, and an id of another tenant's event exists but is
        # not the user's to see (which must not be confirmed either). Otherwise as Django's
        # (Django 5.2's hook): a warning, then the admin index.
        self.message_user(
            request,
            f"No audit event with ID “{unquote(object_id)}” in the events you can see.",
            messages.WARNING,
        )
        return HttpResponseRedirect(reverse("admin:index", current_app=self.admin_site.name))

    def get_urls(self):
        return [
            path(
                "export/",
                self.admin_site.admin_view(self.export_view),
                name="audit_auditevent_export",
            ),
            *super().get_urls(),
        ]

    # --- columns and detail fields ---

    @admin.display(description="actor", ordering="actor_id")
    def actor_display(self, obj: AuditEvent) -> str:
        # People know each other by name; the id stays beside it (what the filters take).
        handle = format_html("{}:{}", exact(obj.actor_type), exact(obj.actor_id))
        if obj.actor_name and obj.actor_name != obj.actor_id:
            return format_html('{} <span class="quiet">{}</span>', obj.actor_name, handle)
        return handle

    @admin.display(description="severity", ordering=SEVERITY_ORDER)
    def severity_display(self, obj: AuditEvent) -> str:
        return obj.get_severity_display()

    @admin.display(description="target")
    def target_display(self, obj: AuditEvent) -> str:
        if not (obj.target_type or obj.target_id):
            return "—"
        return format_html("{}:{}", exact(obj.target_type), exact(obj.target_id))

    def _changelist_link(self, obj: AuditEvent, label: str, **params) -> str:
        url = reverse("admin:audit_auditevent_changelist")
        return format_html(
            '<a href="{}?{}">{}</a>', url, urlencode({"tenant": obj.tenant_id, **params}), label
        )

    @admin.display(description="same actor")
    def same_actor(self, obj: AuditEvent) -> str:
        return self._changelist_link(
            obj,
            format_html("All events by {}:{}", exact(obj.actor_type), exact(obj.actor_id)),
            actor_type=obj.actor_type,
            actor_id=obj.actor_id,
        )

    @admin.display(description="same target")
    def same_target(self, obj: AuditEvent) -> str:
        if not (obj.target_type or obj.target_id):
            return "—"
        return self._changelist_link(
            obj,
            format_html("All events on {}:{}", exact(obj.target_type), exact(obj.target_id)),
            target_type=obj.target_type,
            target_id=obj.target_id,
        )

    @admin.display(description="metadata")
    def metadata_pretty(self, obj: AuditEvent) -> str:
        text = json.dumps(obj.metadata, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre class="tl-json">{}</pre>', text)

    @admin.display(description="verification")
    def verification(self, obj: AuditEvent) -> str:
        status = ledger_status(event=obj)
        colour = "#2e7d32" if status.ok else "#c62828"
        return format_html(
            '<strong style="color:{}">{}</strong> {}',
            colour,
            "verified" if status.ok else "NOT verified",
            status.detail,
        )
