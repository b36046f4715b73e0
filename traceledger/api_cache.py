"""``Cache-Control: no-store`` on every API answer that does not set its own.

Audit events, verification results and error bodies are a tenant's records: no browser or
shared proxy between a client and the API should keep a copy (a security review found only
the export said so). The admin's pages are already private (Django's ``never_cache``).
"""

from django.utils.cache import patch_cache_control

API_PREFIX = "/api/"


class ApiNoStoreMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith(API_PREFIX) and not response.has_header("Cache-Control"):
            patch_cache_control(response, no_store=True)
        return response
