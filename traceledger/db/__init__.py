"""Django's PostgreSQL backend, with a bound on how long a web request waits for an answer
(``traceledger.db.base``). ``DATABASES["default"]["ENGINE"]`` names this package."""
