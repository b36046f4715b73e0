"""The schema's list of ``error.code`` values is the list of codes the API answers.

The list is written by hand (``traceledger.api.schema_hooks.ERROR_CODES``); the codes come
from exception classes and raise sites spread over the project and simplejwt. A new-user QA
round found three codes the API answered and the schema did not name (``user_inactive``,
``session_expired``, ``password_changed``): this test collects them from the sources, so a
new one fails here until it is documented.
"""

import ast
import inspect
import re
from pathlib import Path

import rest_framework_simplejwt
from django.urls import get_resolver
from drf_spectacular.generators import SchemaGenerator
from rest_framework import exceptions

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ["accounts", "audit", "search", "traceledger"]
SIMPLEJWT = Path(rest_framework_simplejwt.__file__).parent
# What simplejwt raises on the API's paths: JWTAuthentication (every request with a Bearer
# token), the login and refresh serializers, and their views.
SIMPLEJWT_MODULES = ["authentication.py", "serializers.py", "views.py", "exceptions.py"]
# Raised by DRF itself, before or around a view (negotiation, parsing, authentication,
# permissions, routing). Not Throttled: our throttles raise RateLimited themselves and never
# let DRF raise its own ("throttled").
DRF_RAISED = [
    exceptions.ParseError,
    exceptions.AuthenticationFailed,
    exceptions.NotAuthenticated,
    exceptions.PermissionDenied,
    exceptions.NotFound,
    exceptions.MethodNotAllowed,
    exceptions.NotAcceptable,
    exceptions.UnsupportedMediaType,
]


def _api_exception_classes() -> list[type]:
    get_resolver().url_patterns  # noqa: B018 - imports every view, and so its exceptions
    found, todo = [], [exceptions.APIException]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def _code_positions() -> dict[str, set[int]]:
    """Exception class name → the positions a code may be passed at (``code=`` aside).

    A ValidationError's codes are per field and always answer ``invalid``: left out."""
    positions: dict[str, set[int]] = {}
    for cls in _api_exception_classes():
        if issubclass(cls, exceptions.ValidationError):
            continue
        names = list(inspect.signature(cls.__init__).parameters)[1:]  # without self
        if "code" in names:
            positions.setdefault(cls.__name__, set()).add(names.index("code"))
    return positions


def _callee(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _string(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _codes_in(path: Path, positions: dict[str, set[int]]) -> set[str]:
    """The codes a source file gives: a class's ``default_code``, the ``code`` passed to an
    API exception, the code of ``error_body(code, …)`` and of the WSGI middleware's
    ``_Refused(status, code, …)``."""
    codes = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(getattr(t, "id", None) == "default_code" for t in targets):
                codes.add(_string(node.value))
        elif isinstance(node, ast.Call):
            name = _callee(node)
            at = {"error_body": {0}, "_Refused": {1}}.get(name) or positions.get(name)
            if at is None:
                continue
            codes.update(_string(node.args[i]) for i in at if i < len(node.args))
            codes.update(_string(k.value) for k in node.keywords if k.arg == "code")
    return codes - {None}


def _answered_codes() -> set[str]:
    positions = _code_positions()
    sources = [
        path
        for package in PROJECT
        for path in (ROOT / package).rglob("*.py")
        if not {"tests", "migrations"} & set(path.relative_to(ROOT).parts)
    ] + [SIMPLEJWT / name for name in SIMPLEJWT_MODULES]
    codes = set().union(*(_codes_in(path, positions) for path in sources))
    return codes | {cls.default_code for cls in DRF_RAISED}


def _schema_description() -> str:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    error = schema["components"]["schemas"]["Error"]["properties"]["error"]
    return error["properties"]["code"]["description"]


def test_the_error_schema_names_every_code_the_api_answers():
    answered = _answered_codes()
    # What the QA round found missing, and what every error path has: the scan sees them.
    assert {"user_inactive", "session_expired", "password_changed", "invalid"} <= answered

    named = set(re.findall(r"[a-z_]+", _schema_description()))
    assert sorted(answered - named) == []


def test_it_names_no_code_the_api_never_answers():
    from traceledger.api.schema_hooks import ERROR_CODES

    assert sorted(set(ERROR_CODES) - _answered_codes()) == []
