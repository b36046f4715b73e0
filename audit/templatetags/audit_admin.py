"""Template tags of the audit admin's templates (templates/admin/...).

- ``{% audit_dashboard as board %}`` for the index page. A tag rather than a custom
  AdminSite: the default site (and every app's registrations on it) stays as it is.
- ``{% audit_date_hierarchy cl %}`` replaces ``{% date_hierarchy cl %}`` on the event list.
"""

from django import template
from django.contrib.admin.templatetags.admin_list import date_hierarchy
from django.utils import timezone

from audit.admin.dashboard import Dashboard, dashboard_for
from audit.admin.listing import time_bounds

register = template.Library()


@register.simple_tag(takes_context=True)
def audit_dashboard(context) -> Dashboard | None:
    request = context.get("request")
    if request is None:
        return None
    return dashboard_for(user=request.user)


class _WithStartLevel:
    """The changelist, with the year (and month) Django would pick already in its params."""

    def __init__(self, changelist, params: dict):
        self._changelist = changelist
        self.params = params

    def __getattr__(self, name):
        return getattr(self._changelist, name)


@register.inclusion_tag("admin/date_hierarchy.html")
def audit_date_hierarchy(cl):
    """Django's date hierarchy, without its ``aggregate(Min, Max)`` over the whole set.

    With no date chosen, Django picks the start level (a single year or month) from MIN and
    MAX of the filtered set; over a full-text match that aggregate reads every match. The
    same choice is made here from two index probes (``time_bounds``), then Django's own tag
    renders it exactly as it would have.
    """
    field = cl.date_hierarchy
    if not field:
        return {"show": False}
    year, month = f"{field}__year", f"{field}__month"
    if any(key.startswith(f"{field}__") for key in cl.params):
        return date_hierarchy(cl)
    first, last = time_bounds(cl.queryset, field)
    params = dict(cl.params)
    if first is not None and last is not None:
        first, last = timezone.localtime(first), timezone.localtime(last)
        if first.year == last.year:
            params[year] = str(first.year)
            if first.month == last.month:
                params[month] = str(first.month)
    return date_hierarchy(_WithStartLevel(cl, params))
