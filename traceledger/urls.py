from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from traceledger.health import healthz, readyz
from traceledger.metrics import metrics_view

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
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/v1/", include(api_v1)),
    path("admin/", admin.site.urls),
]
