"""Operators' pages: dead letters (inspect, pull from RabbitMQ, replay, discard) and the outbox.

The writes themselves live in ``audit.services.dead_letters`` (each one records its own
audit event); these classes only parse the request and report the outcome.
"""

import json
import logging

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from accounts.models import Tenant
from accounts.services import actor_for_user
from accounts.signals import Actor
from audit.admin.list_filters import TenantFilter
from audit.admin.list_params import BadParamsNamedMixin
from audit.admin.listing import TenantScopedMixin
from audit.models import DeadLetter, DeadLetterStatus, OutboxMessage
from audit.selectors import outbox_backlog
from audit.services.dead_letters import dead_letters_replay_preview, dlq_depth, not_new_text
from traceledger.admin_confirm import confirm_first
from traceledger.admin_lookups import NoPatternLookupsMixin
from traceledger.admin_pages import PageCheckedChangeListMixin, PageRangeMixin
from traceledger.admin_readonly import ReadOnlyAdminMixin
from traceledger.admin_selection import ValidSelectionMixin
from traceledger.query_guard import nul_query_handled

logger = logging.getLogger(__name__)


class _TenantNamedMixin:
    """Rows keep a bare ``tenant_id`` (a dead letter may name a tenant that does not exist):
    shown as the tenant's slug, or as the id with "no such tenant"; superusers filter by it."""

    def get_queryset(self, request):
        slug = Tenant.objects.filter(pk=OuterRef("tenant_id")).values("slug")[:1]
        return super().get_queryset(request).annotate(tenant_slug=Subquery(slug))

    @admin.display(description="tenant", ordering="tenant_slug")
    def tenant(self, obj) -> str:
        if obj.tenant_id is None:
            return "—"
        slug = getattr(obj, "tenant_slug", None)
        return slug or f"#{obj.tenant_id} (no such tenant)"


class _PayloadDeferredChangeList(PageCheckedChangeListMixin, ChangeList):
    """The list without the payload and headers, which only the detail page shows: a row
    may hold a whole dead-lettered batch (up to 1,000 events, ~5 MiB), and 50 of them made
    a list page take 1.3 s and 350 MB. Actions get this queryset too, so the confirmation
    page and the services' id look-ups do not load payloads either."""

    def get_queryset(self, request, exclude_parameters=None):
        queryset = super().get_queryset(request, exclude_parameters)
        return queryset.defer(*self.model_admin.list_deferred)


class _OperationsAdmin(
    BadParamsNamedMixin,
    ValidSelectionMixin,
    PageRangeMixin,
    NoPatternLookupsMixin,
    _TenantNamedMixin,
    TenantScopedMixin,
    admin.ModelAdmin,
):
    """What both operator lists share: tenant-scoped rows named by tenant, safe selections
    and pages, unusable parameters named and dropped (no ``?e=1``), no pattern lookups, no
    payloads on the list."""

    list_deferred = ("payload",)
    change_form_template = "admin/audit/operations_change_form.html"

    def get_changelist(self, request, **kwargs):
        return _PayloadDeferredChangeList


def _pretty(value) -> str:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="tl-json">{}</pre>', text)


def _actor(request) -> Actor:
    """The same identity as the person's other recorded actions (id, type, name)."""
    return actor_for_user(request.user)


def _replay_warning(queryset) -> str:
    """What a replay of this selection would skip, said before it runs."""
    text = dead_letters_replay_preview(queryset).skipped_text()
    return f"These will be skipped: {text}." if text else ""


def _discard_warning(queryset) -> str:
    """The letters a discard of this selection would leave as they are, said before it runs."""
    text = not_new_text(queryset.exclude(status=DeadLetterStatus.NEW).count())
    return f"These will be skipped: {text}." if text else ""


def _actor_tenant_id(request) -> int | None:
    """The tenant of staff acting on their own tenant's letters (None: a superuser), whose
    trail then records the action beside the system tenant's."""
    return None if request.user.is_superuser else request.user.tenant_id


@admin.register(DeadLetter)
class DeadLetterAdmin(_OperationsAdmin):
    change_list_template = "admin/audit/deadletter/change_list.html"
    list_display = (
        "id",
        "status",
        "tenant",
        "reason",
        "exception_summary",
        "attempts",
        "event_count",
        "first_failed_at",
        "last_failed_at",
        "drained_at",
    )
    list_filter = ("status", TenantFilter, "reason")
    list_per_page = 50
    list_deferred = ("payload", "headers")
    actions = ("replay_selected", "discard_selected")
    fields = (
        "id",
        "status",
        "status_changed_at",
        "status_changed_by",
        "message_id",
        "tenant",
        "task_name",
        "original_queue",
        "reason",
        "attempts",
        "event_count",
        "first_failed_at",
        "last_failed_at",
        "drained_at",
        "exception",
        "payload_pretty",
        "headers_pretty",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # A dead letter is history; "discard" marks it, nothing deletes it.
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Every field is read-only: the page is a detail view; the actions change status.
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
            # Django says "Change dead letter" when the user may change (the actions need
            # it), though nothing here can be edited.
            "title": "Dead letter",
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        # Not Django's "… doesn't exist. Perhaps it was deleted?": a dead letter is never
        # deleted, and another tenant's letter must not be confirmed to exist either.
        self.message_user(
            request,
            f"No dead letter with ID “{unquote(object_id)}” in the letters you can see.",
            messages.WARNING,
        )
        return HttpResponseRedirect(reverse("admin:audit_deadletter_changelist"))

    @nul_query_handled
    def changelist_view(self, request, extra_context=None):
        # The queue holds every tenant's dead letters: its depth is for operators only.
        depth = dlq_depth() if request.user.is_superuser else None
        extra_context = {**(extra_context or {}), "dlq_depth": depth}
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        return [
            path(
                "pull/",
                self.admin_site.admin_view(self.pull_view),
                name="audit_deadletter_pull",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="exception")
    def exception_summary(self, obj: DeadLetter) -> str:
        lines = [line for line in obj.exception.strip().splitlines() if line.strip()]
        summary = lines[-1] if lines else ""
        return summary if len(summary) <= 120 else summary[:119] + "…"

    @admin.display(description="payload")
    def payload_pretty(self, obj: DeadLetter) -> str:
        return _pretty(obj.payload)

    @admin.display(description="headers")
    def headers_pretty(self, obj: DeadLetter) -> str:
        return _pretty(obj.headers)

    @confirm_first(
        description="Replay selected dead letters",
        question="Replay these dead letters? Their events are republished to audit.ingest "
        "(events stored already are dropped by the worker, or dead-lettered again when their "
        "content differs) and each letter is marked replayed; "
        "this cannot be undone. Only letters still new are replayed.",
        button="Yes, replay them",
        permissions=("change",),
        warning=_replay_warning,
    )
    def replay_selected(self, request, queryset):
        from audit.services.dead_letters import UnknownDeadLetters, dead_letters_replay

        ids = list(queryset.values_list("pk", flat=True))
        try:
            result = dead_letters_replay(
                ids=ids, actor=_actor(request), tenant_id=_actor_tenant_id(request)
            )
        except UnknownDeadLetters as exc:  # rows vanished since the page was rendered
            self.message_user(request, f"Nothing replayed: {exc}", messages.ERROR)
            return
        # RabbitMQ down: the batches are safe in the outbox, but not in audit.ingest yet.
        fine = result.replayed and not result.skipped_text() and not result.via_outbox
        self.message_user(
            request,
            result.summary(len(ids)),
            messages.SUCCESS if fine else messages.WARNING,
        )

    @confirm_first(
        description="Discard selected dead letters",
        question="Discard these dead letters? They are kept, marked discarded, and can no "
        "longer be replayed; this cannot be undone. Only letters still new are discarded.",
        button="Yes, discard them",
        permissions=("change",),
        warning=_discard_warning,
    )
    def discard_selected(self, request, queryset):
        from audit.services.dead_letters import UnknownDeadLetters, dead_letters_discard

        ids = list(queryset.values_list("pk", flat=True))
        try:
            discarded = dead_letters_discard(
                ids=ids, actor=_actor(request), tenant_id=_actor_tenant_id(request)
            )
        except UnknownDeadLetters as exc:
            self.message_user(request, f"Nothing discarded: {exc}", messages.ERROR)
            return
        # Unknown ids raise, so every selected letter not discarded was no longer new.
        skipped = not_new_text(len(ids) - discarded)
        head = (
            f"Discarded {discarded} of {len(ids)} selected dead letter(s)."
            if discarded
            else f"Discarded none of the {len(ids)} selected dead letter(s): nothing changed."
        )
        self.message_user(
            request,
            head + (f" Skipped: {skipped}." if skipped else ""),
            messages.WARNING if skipped or not discarded else messages.SUCCESS,
        )

    def pull_view(self, request):
        """POST (CSRF-checked by admin_view): drain ``audit.ingest.dlq`` into the table."""
        from audit.services.dead_letters import NoteUnavailable, dead_letters_drain, dlq_depth
        from audit.services.submission import record_system_event

        # Draining creates rows for every tenant: an operator-wide action.
        if not (request.user.is_superuser and self.has_change_permission(request)):
            raise PermissionDenied
        if request.method != "POST":
            # A bookmarked or typed URL: say where the button is instead of a blank 405.
            self.message_user(
                request,
                "Pulling is the “Pull from RabbitMQ” button of this page (a POST).",
                messages.INFO,
            )
            return HttpResponseRedirect(reverse("admin:audit_deadletter_changelist"))
        # One quick look first, as drain_dlq does: the drain's own connect retries with
        # backoff (12 s refused, 33 s black-holed), holding a web thread past gunicorn's
        # timeout before the operator heard anything (an outage review).
        waiting = dlq_depth()
        if waiting is None:
            self.message_user(
                request,
                "Could not pull from RabbitMQ: it is unreachable (nothing was pulled).",
                messages.ERROR,
            )
            return HttpResponseRedirect(reverse("admin:audit_deadletter_changelist"))
        if waiting == 0:
            self.message_user(request, "Nothing to pull: the queue is empty.", messages.INFO)
            return HttpResponseRedirect(reverse("admin:audit_deadletter_changelist"))
        try:
            drained = dead_letters_drain()
        except NoteUnavailable as exc:  # nothing was taken: say why, and when to pull again
            self.message_user(request, f"Nothing pulled: {exc}.", messages.WARNING)
        except Exception as exc:  # RabbitMQ down: tell the operator, do not 500
            logger.warning("DLQ drain failed", exc_info=True)
            self.message_user(
                request, f"Could not pull from RabbitMQ: {exc.__class__.__name__}", messages.ERROR
            )
        else:
            # The drain service does not record itself (manage.py drain_dlq runs unattended);
            # an operator's pull from the admin is an operator action, so it is recorded.
            actor = _actor(request)
            record_system_event(
                tenant_id=None,
                action="dead_letter.drain",
                actor_id=actor.id,
                actor_type=actor.type,
                actor_name=actor.name,
                description=(
                    f"{actor.name} pulled {drained.moved} dead letter(s) from RabbitMQ"
                    + (
                        f"; {drained.waiting_for_redis} left there until Redis answers"
                        if drained.waiting_for_redis
                        else ""
                    )
                ),
                metadata={
                    "arrived": drained.moved,
                    "new": drained.new,
                    "repeats": drained.repeats,
                    # The first 100 (REPEATS_KEPT): an event's metadata holds 16 KiB at most.
                    "repeat_of_ids": [r.id for r in drained.repeated],
                    "via": "admin",
                    # Only when Redis went away mid-pull: the letters it left in RabbitMQ.
                    **(
                        {"left_waiting_for_redis": drained.waiting_for_redis}
                        if drained.waiting_for_redis
                        else {}
                    ),
                },
            )
            breakdown = drained.breakdown()
            self.message_user(
                request,
                f"Pulled {drained.moved} dead letter(s) from RabbitMQ"
                + (f": {breakdown}." if breakdown else "."),
                # A letter someone replayed or discarded failed again: make it stand out.
                messages.WARNING if drained.handled_before else messages.SUCCESS,
            )
            if drained.waiting_for_redis:
                self.message_user(
                    request,
                    f"{drained.waiting_for_redis} dead letter(s) stay in RabbitMQ for now, and "
                    "the pull stopped: Redis does not answer, and it holds why the worker "
                    "rejected them. Pull again once Redis is back.",
                    messages.WARNING,
                )
        return HttpResponseRedirect(reverse("admin:audit_deadletter_changelist"))


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdminMixin, _OperationsAdmin):
    """Read-only: the relay owns these rows. Visible so operators see the backlog."""

    change_list_template = "admin/audit/outboxmessage/change_list.html"
    list_display = ("id", "tenant", "event_count", "created_at", "attempts", "last_error")
    fields = (
        "id",
        "tenant",
        "event_count",
        "created_at",
        "attempts",
        "last_error",
        "payload_pretty",
    )
    readonly_fields = fields
    list_per_page = 100

    @admin.display(description="payload")
    def payload_pretty(self, obj: OutboxMessage) -> str:
        return _pretty(obj.payload)

    @nul_query_handled
    def changelist_view(self, request, extra_context=None):
        backlog = outbox_backlog(self.get_queryset(request))
        extra_context = {**(extra_context or {}), "backlog": backlog}
        return super().changelist_view(request, extra_context)
