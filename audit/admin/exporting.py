"""Exports from the event changelist: the selection (an action) or the current filter (a link).

Both stream through the read side's ``audit.exports.export_rows`` (the same bytes as
``GET /api/v1/audit-events/export``) and both are recorded as an ``audit_log.export`` event
of the tenant whose events were exported.
"""

import contextlib

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import PAGE_VAR, SEARCH_VAR
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect, StreamingHttpResponse

from accounts.principal import principal_for_user
from accounts.ratelimits import HeavyReadRateLimit, RateLimited, check_rate
from audit.admin.access_log import ExportNotAttributable, export_record
from audit.export_slots import ExportsBusy, export_rows_in_slot
from audit.exports import FORMATS, export_filename, export_rows
from traceledger.query_guard import nul_query_handled


def export_response(
    *, request: HttpRequest, queryset, fmt: str, scope: dict
) -> StreamingHttpResponse:
    """Stream ``queryset`` as ``fmt`` after recording who exported what. Raises
    ``RateLimited`` or ``ExportsBusy`` (before recording anything) when the user has
    exported too often, or this process streams as many exports as it may."""
    content_type, extension = FORMATS[fmt]
    # The API's exports and ledger checks count against TRACELEDGER_RATELIMIT_HEAVY per user;
    # the same person exporting from the admin shares that bucket (each costs seconds of
    # database time wherever it is asked for). Looked at first, so that a spent budget is
    # refused before anything is recorded; counted only once the export is recorded, so
    # that one refused for another reason (no tenant, no slot) costs nothing.
    heavy = heavy_read_budget(request)
    check_rate(**heavy, increment=False)
    tenant_ids: list[int | None] = []

    def record() -> None:
        tenant_ids.extend(export_record(request=request, queryset=queryset, fmt=fmt, scope=scope))
        with contextlib.suppress(RateLimited):  # another request took the last one meanwhile
            check_rate(**heavy)

    rows = export_rows_in_slot(
        # Recorded before the first byte: an export that is not in the trail never starts.
        record=record,
        rows=lambda: export_rows(queryset, fmt),
        request_meta=request.META,
    )
    try:
        # The name's query runs with the slot taken: a failure must give it back now, not
        # whenever the rows are collected.
        response = StreamingHttpResponse(rows, content_type=content_type)
        name = export_filename(tenant_ids=tenant_ids, extension=extension)
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
    except BaseException:
        rows.close()
        raise


def heavy_read_budget(request: HttpRequest) -> dict:
    """``check_rate``'s arguments for a person's exports and ledger checks in the admin: the
    API's own bucket (``TRACELEDGER_RATELIMIT_HEAVY``), since each costs seconds of database
    time wherever it is asked for."""
    return {
        "request": request,
        "group": HeavyReadRateLimit.group,
        "rate": settings.TRACELEDGER_RATELIMIT_HEAVY,
        "key": principal_for_user(request.user).rate_key,
    }


def heavy_budget_spent() -> str:
    return (
        "you have made as many exports and ledger checks this minute as "
        f"TRACELEDGER_RATELIMIT_HEAVY ({settings.TRACELEDGER_RATELIMIT_HEAVY}) allows"
    )


def _refusal(exc: Exception) -> str:
    if isinstance(exc, RateLimited):
        return (
            f"Cannot export right now: {heavy_budget_spent()}. Nothing was exported or "
            f"recorded; try again in {exc.wait:.0f} seconds."
        )
    if isinstance(exc, ExportsBusy):
        return (
            "Cannot export right now: as many exports as this server streams at once are "
            "running. Nothing was exported or recorded; try again in a few seconds."
        )
    return str(exc)


class ExportActionsMixin:
    """Export actions and the "export this filter" view for the event admin (which provides
    ``param_problems``, ``search_refusal`` and ``without_bad_params``)."""

    actions = ("export_csv", "export_jsonl")

    @admin.action(description="Export selected events as CSV", permissions=("view",))
    def export_csv(self, request, queryset):
        return self._export_selection(request, queryset, "csv")

    @admin.action(description="Export selected events as JSONL", permissions=("view",))
    def export_jsonl(self, request, queryset):
        return self._export_selection(request, queryset, "jsonl")

    def _export_selection(self, request, queryset, fmt):
        selected_across = request.POST.get("select_across") == "1"
        if selected_across:  # "select all N": the changelist's filter is the selection
            scope = {"selection": "filter", "query": request.GET.urlencode()}
        else:
            # The ids recorded are those exported, read by ``export_record`` from this
            # queryset (the user's own tenant's events), not those posted.
            scope = {"selection": "selected"}
        try:
            return export_response(
                request=request, queryset=queryset.order_by(*self.ordering), fmt=fmt, scope=scope
            )
        except (ExportNotAttributable, ExportsBusy, RateLimited) as exc:
            self.message_user(request, _refusal(exc), messages.ERROR)
            return None

    @nul_query_handled
    def export_view(self, request):
        """GET ``export/?format=csv|jsonl&<the changelist's own filters>``.

        A refused export goes back to the list with the user's filters and search (without
        ``format`` and the page: the list would take ``format`` for a bad lookup and answer
        ``?e=1``, every filter dropped) and a message saying why, never to an empty file.
        """
        if not self.has_view_permission(request):
            raise PermissionDenied
        request.GET = request.GET.copy()
        formats = list(dict.fromkeys(request.GET.pop("format", ["csv"])))
        fmt = formats[-1]
        # An export is of the list's filter, whatever page the list was on.
        request.GET.pop(PAGE_VAR, None)
        problems = self.param_problems(request)
        if len(formats) > 1:
            # The last one was taken, silently (admin QA): refused like any parameter given
            # twice.
            shown = ", ".join(repr(value) for value in formats)
            problems["format"] = f"format was given {len(formats)} values ({shown}): give one"
        if problems:
            return self.without_bad_params(request, problems, "Cannot export")
        if fmt not in FORMATS:
            self.message_user(
                request, f"format must be one of {', '.join(FORMATS)}", messages.ERROR
            )
            return self._back_to_the_list(request)
        if self.search_refusal(request.GET.get(SEARCH_VAR, "")):
            # Not the reason itself: the list, searching the same text, names it (once).
            self.message_user(
                request, "Cannot export: the search was not run (see below).", messages.ERROR
            )
            return self._back_to_the_list(request)
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters as exc:
            self.message_user(request, f"Cannot export: {exc}", messages.ERROR)
            return HttpResponseRedirect("../")
        scope = {"selection": "filter", "query": request.GET.urlencode()}
        try:
            # The changelist's own queryset: filtered and searched once, as the list was.
            return export_response(
                request=request, queryset=changelist.queryset, fmt=fmt, scope=scope
            )
        except (ExportNotAttributable, ExportsBusy, RateLimited) as exc:
            self.message_user(request, _refusal(exc), messages.ERROR)
            return self._back_to_the_list(request)

    def _back_to_the_list(self, request):
        """The list as it was filtered and searched, not the whole trail."""
        return HttpResponseRedirect("../" + (f"?{request.GET.urlencode()}" if request.GET else ""))
