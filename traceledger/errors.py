"""Errors that services raise and every entry point answers the same way."""


class DependencyUnavailable(Exception):
    """Nothing was done because the services it needs are down: answer 503 with
    ``Retry-After`` (the API's exception handler does), never 500."""

    retry_after = 30  # long enough for a broker or database restart to finish
    # What an API client is told when the exception's own text names server internals (a
    # path, a setting): that text goes to the log instead.
    public_message: str | None = None


class Overloaded(Exception):
    """Refused before doing anything, to keep a queue bounded: answer 429 with
    ``Retry-After`` (the API's exception handler does). The client retries later."""

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after
