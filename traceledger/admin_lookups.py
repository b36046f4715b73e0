"""Admin lookups a hand-edited URL may not use.

Django's admin lets a query string filter on any lookup of a model's own fields. A pattern
lookup (``?reason__regex=(``) fails in PostgreSQL on an invalid pattern (a 500) and can scan
a large table on a valid one; nothing in the admin links to one. Refused, it is Django's
"400 Bad Request" for a disallowed lookup.
"""

PATTERN_LOOKUPS = frozenset({"regex", "iregex"})


class NoPatternLookupsMixin:
    def lookup_allowed(self, lookup, value, request=None):
        if lookup.rsplit("__", 1)[-1] in PATTERN_LOOKUPS:
            return False
        return super().lookup_allowed(lookup, value, request)
