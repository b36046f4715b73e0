"""The admin's login, limited like ``POST /api/v1/auth/login``.

The admin login guards the most privileged accounts (staff, superusers) and each attempt
costs a password hash: without a limit it allowed unbounded guessing. Every POST counts in
the API login's two buckets (``TRACELEDGER_RATELIMIT_LOGIN`` per client IP and per
username), so attempts add up across both doors. Over the limit the login page answers 429
with ``Retry-After`` and says when to try again.
"""

from django.conf import settings
from django.contrib import admin, messages

from accounts.ratelimits import (
    LoginIpRateLimit,
    LoginUsernameRateLimit,
    RateLimited,
    check_rate,
    login_username_key,
)


def admin_login(request, extra_context=None):
    if request.method == "POST":
        try:
            _count_attempt(request)
        except RateLimited as exc:
            messages.error(request, f"Too many login attempts. Try again in {exc.wait} seconds.")
            # The page as a GET shows it: the form unbound, nothing authenticated.
            request.method = "GET"
            response = admin.site.login(request, extra_context)
            response.status_code = 429
            response["Retry-After"] = str(exc.wait)
            return response
    return admin.site.login(request, extra_context)


def _count_attempt(request) -> None:
    rate = getattr(settings, LoginIpRateLimit.setting)
    check_rate(request=request, group=LoginIpRateLimit.group, rate=rate, key="ip")
    key = login_username_key(request.POST.get("username"))
    if key is not None:
        check_rate(request=request, group=LoginUsernameRateLimit.group, rate=rate, key=key)
