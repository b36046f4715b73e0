"""``{% audit_dashboard as board %}`` for the admin index page (templates/admin/index.html).

A template tag rather than a custom AdminSite: the default site (and every app's
registrations on it) stays as it is; the numbers come from ``audit.admin.dashboard``.
"""

from django import template

from audit.admin.dashboard import Dashboard, dashboard_for

register = template.Library()


@register.simple_tag(takes_context=True)
def audit_dashboard(context) -> Dashboard | None:
    request = context.get("request")
    if request is None:
        return None
    return dashboard_for(user=request.user)
