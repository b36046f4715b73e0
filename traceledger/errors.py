"""Errors that services raise and every entry point answers the same way."""


class DependencyUnavailable(Exception):
    """Nothing was done because the services it needs are down: answer 503 with
    ``Retry-After`` (the API's exception handler does), never 500."""

    retry_after = 30  # long enough for a broker or database restart to finish
