"""Refuse to start a production process with development defaults."""

from django.core.exceptions import ImproperlyConfigured


def guard_production_settings(
    *, debug: bool, secret_key: str, insecure_secret_key: str, allowed_hosts: list[str]
) -> None:
    if debug:
        return
    problems = []
    if not secret_key or secret_key == insecure_secret_key or len(secret_key) < 32:
        problems.append(
            "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) must be set to a random value of "
            "at least 32 characters"
        )
    if not allowed_hosts:
        problems.append("DJANGO_ALLOWED_HOSTS must list the host names this service answers to")
    if problems:
        raise ImproperlyConfigured(
            "Refusing to start with DJANGO_DEBUG=0 and insecure settings: " + "; ".join(problems)
        )
