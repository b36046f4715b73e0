"""Strict readers of environment variables for ``settings.py`` (every setting uses one).

A value that is not what the setting needs stops the process with an error naming the
variable, instead of becoming a different value: django-environ's ``float`` drops every
character that is not a digit (``500ms`` became 500 seconds), its ``list`` keeps the space
after a comma (``"a.com, b.com"`` allowed `` b.com`` only), and django-ratelimit only
parses a rate at the first request (a 500 on every one).
"""

import math
import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()
env.smart_cast = False

# django-ratelimit's form: N per [n] second(s), minute(s), hour(s) or day(s).
_RATE = re.compile(r"(\d+)/(\d*)[smhd]")
# libpq takes several hosts in one URL (host1:5432,host2:5432), and django-environ passes
# them on as HOST and PORT lists.
_MULTI_HOST_SCHEMES = {"postgres", "postgresql"}


def secret(name: str, default: str) -> str:
    """``NAME``, or the content of the file ``NAME_FILE`` names (Docker/Kubernetes secrets),
    which wins."""
    path = env.str(f"{name}_FILE", default="")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            message = f"{name}_FILE={path!r} cannot be read: {exc.strerror}"
            raise ImproperlyConfigured(message) from None
    return env.str(name, default=default)


def boolean(name: str, default: bool) -> bool:
    """A boolean that is not one of the known spellings is an error, never a silent False."""
    raw = env.str(name, default="")
    if raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(
        f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)"
    )


def seconds(name: str, *, default: float, positive: bool = False) -> float:
    """``positive``: 0 is refused too, for a timeout or an interval that cannot work at 0 (a
    zero schedule is a tight loop, a zero socket timeout never waits for an answer)."""
    raw = env.str(name, default="").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        message = f"{name}={raw!r} is not a number of seconds (e.g. 0.5)"
        raise ImproperlyConfigured(message) from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ImproperlyConfigured(f"{name}={raw!r} must be a finite number of seconds, {bound}")
    return value


def integer(name: str, *, default: int, minimum: int = 0) -> int:
    raw = env.str(name, default="").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be at least {minimum}")
    return value


def url(name: str, *, default: str, schemes: tuple[str, ...], what: str, several: str = "") -> str:
    """A URL of one of ``schemes``, with a port (if any) from 1 to 65535; anything else stops
    the process naming the variable (a typo otherwise passed ``manage.py check`` and failed
    at the first connection, or made the database backend's import error the only message;
    a bad port was a traceback in the first process to connect, and 0 silently became the
    default port). Only the scheme is repeated: the rest may hold a password.

    ``several``: the client takes several URLs in one value, split at this character
    (django-redis's replicas after ``,``, kombu's failover brokers after ``;``); each is
    checked."""
    value = env.str(name, default=default)
    for one in value.split(several) if several else [value]:
        _check_scheme(name, one, schemes=schemes, what=what)
        _check_ports(name, one)
    return value


def _check_scheme(name: str, value: str, *, schemes: tuple[str, ...], what: str) -> None:
    scheme, separator, rest = value.partition("://")
    if not separator or scheme.lower() not in schemes or not rest:
        given = f"{scheme}://…" if separator else "a value without a scheme://"
        allowed = ", ".join(f"{s}://" for s in schemes)
        article = "an" if what[0] in "AEIOU" else "a"
        raise ImproperlyConfigured(f"{name} must be {article} {what} URL ({allowed}), not {given}")


def _check_ports(name: str, value: str) -> None:
    """The clients read the port only when they first connect, with urllib's ``.port``,
    whose error repeats it ("Port could not be cast to integer value as '…'": part of a
    password holding an unencoded ``/``)."""
    scheme, _, rest = value.partition("://")
    try:
        hostinfo = urlsplit(f"//{rest}").netloc.rpartition("@")[2]
        multi = scheme.lower() in _MULTI_HOST_SCHEMES
        ports = (
            [urlsplit(f"//{host}").port for host in unquote(hostinfo).split(",")]
            if multi
            else [urlsplit(f"//{hostinfo}").port]
        )
    except ValueError:  # not digits, above 65535, or an unclosed [ of an IPv6 address
        ports = [0]
    if 0 in ports:
        raise ImproperlyConfigured(
            f"{name} has a port that is not a number from 1 to 65535 ({scheme}://…)"
        )


def redis_url(name: str, *, default: str) -> str:
    """``url`` of Redis (several after commas: django-redis's primary, then replicas), each
    naming its database by a whole number or not at all: redis-py reads a path it cannot
    turn into a number as database 0 (``/abc``), and a ``?db=`` that is not one failed the
    first cache call. ``unix://`` has the socket's path there, and ``?db=`` only."""
    value = url(
        name, default=default, schemes=("redis", "rediss", "unix"), what="Redis", several=","
    )
    for one in value.split(","):
        parts = urlsplit(one)
        path_ok = parts.scheme.lower() == "unix" or re.fullmatch(r"/?|/[0-9]+", parts.path)
        query_ok = all(re.fullmatch(r"[0-9]+", db) for db in parse_qs(parts.query).get("db", []))
        if not (path_ok and query_ok):
            raise ImproperlyConfigured(
                f"{name} names a database that is not a whole number ({parts.scheme}://…): "
                "use /N or ?db=N, e.g. redis://localhost:6379/0"
            )
    return value


def elasticsearch_url(name: str) -> str:
    """Unset (search on PostgreSQL), or the one URL the Elasticsearch client takes: scheme,
    host and port (the client refuses a URL without a port only when it is first built: each
    search then answered 500)."""
    if not env.str(name, default=""):
        return ""
    value = env.str(name, default="")
    _check_scheme(name, value, schemes=("http", "https"), what="Elasticsearch")
    from elastic_transport.client_utils import url_to_node_config

    try:
        url_to_node_config(value)
    except ValueError:
        # Its message repeats the URL, which may hold a password.
        raise ImproperlyConfigured(
            f"{name} must be one URL with scheme, host and port (e.g. http://localhost:9200)"
        ) from None
    _check_ports(name, value)  # the client takes port 0
    return value


def log_level(name: str, *, default: str) -> str:
    raw = env.str(name, default="").strip().upper() or default
    if raw not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)"
        )
    return raw


def names(name: str, *, default: list[str]) -> list[str]:
    """A comma-separated list; blanks around the commas do not count."""
    raw = env.str(name, default="")
    if not raw.strip():
        return list(default)
    return [part.strip() for part in raw.split(",") if part.strip()]


def rate(name: str, *, default: str) -> str:
    """N per period; 0 for either is refused: django-ratelimit limits every request at a
    count of 0 (a 429 for all) and fails every one at a period of 0 (``N/0m``, a 500)."""
    raw = env.str(name, default="").strip() or default
    match = _RATE.fullmatch(raw)
    if not match:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a rate: use N/s, N/m, N/h or N/d (e.g. 6000/m)"
        )
    count, periods = match.groups()
    if int(count) == 0:
        raise ImproperlyConfigured(f"{name}={raw!r} must allow at least 1 request per period")
    if periods and int(periods) == 0:
        raise ImproperlyConfigured(f"{name}={raw!r} must have a period of at least 1 (e.g. 100/5m)")
    return raw


def meta_key(name: str) -> str | None:
    """A ``request.META`` key (``HTTP_X_REAL_IP``), or None when unset."""
    raw = env.str(name, default="").strip()
    if not raw:
        return None
    if not re.fullmatch(r"HTTP_[A-Z0-9_]+|REMOTE_ADDR", raw) or raw == "HTTP_X_FORWARDED_FOR":
        raise ImproperlyConfigured(
            f"{name}={raw!r} must name one request header holding one address, as Django's "
            "META key (e.g. HTTP_X_REAL_IP); X-Forwarded-For holds a list"
        )
    return raw
