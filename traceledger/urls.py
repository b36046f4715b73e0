from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView, View
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.negotiation import DefaultContentNegotiation

from accounts.admin import own_password_change
from accounts.admin_login import admin_login
from traceledger.admin_shortcut import view_on_site
from traceledger.api.not_found import api_not_found
from traceledger.health import healthz, readyz
from traceledger.metrics import metrics_view

admin.site.site_header = "TraceLedger"
admin.site.site_title = "TraceLedger"
admin.site.index_title = "Audit trail and operations"
# The admin is the only HTML site: no "View site" link, and "/" opens it.
admin.site.site_url = None
# The event list's seven columns and its filters need the width: with Django's app sidebar
# open, outcome and severity fell off a 1366-pixel screen. The index lists the few models.
admin.site.enable_nav_sidebar = False


class SchemaFormatNegotiation(DefaultContentNegotiation):
    """``/api/schema/?format=json|yaml``, drf-spectacular's documented switch, although the
    API itself has DRF's ``?format=`` override turned off (``URL_FORMAT_OVERRIDE``)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        format_suffix = format_suffix or request.query_params.get("format")
        return super().select_renderer(request, renderers, format_suffix)


class SwaggerView(SpectacularSwaggerSplitView):
    """Swagger UI, its start-up script served by URL (``?script``), not inline, so that the
    page's Content-Security-Policy allows it; answering OPTIONS as Django's own views do:
    200, ``Allow``, no body.

    DRF's OPTIONS answer is the view's metadata, rendered here by the page's only renderer,
    ``TemplateHTMLRenderer``, which has no template for it: every OPTIONS was a 500
    (``TemplateDoesNotExist: No template names provided``).
    """

    def options(self, request, *args, **kwargs):
        return View.options(self, request, *args, **kwargs)


# Under /api/ a request Django refuses before any view (a Host outside ALLOWED_HOSTS) is
# answered in the API's error shape, not an HTML page.
handler400 = "traceledger.api.bad_request.bad_request_handler"
# PostgreSQL unreachable outside a view (a middleware saving the session): 503, not 500.
handler500 = "traceledger.database_unavailable.server_error"

api_v1 = [
    path("", include("accounts.api.urls")),
    # search before audit: /audit-events/search must not be read as an event id
    path("", include("search.api.urls")),
    path("", include("audit.api.urls")),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(content_negotiation_class=SchemaFormatNegotiation),
        name="schema",
    ),
    path("api/docs/", SwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/v1/", include(api_v1)),
    re_path(r"^api/", api_not_found),
    # Before the admin's own: a person's password change is recorded (accounts/admin.py).
    path("admin/password_change/", own_password_change),
    path("admin/login/", admin_login, name="admin_login_limited"),
    path("admin/r/<int:content_type_id>/<path:object_id>/", admin.site.admin_view(view_on_site)),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(pattern_name="admin:index"), name="root"),
]
