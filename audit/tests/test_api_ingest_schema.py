"""The ingest body's OpenAPI documentation (DRF serializers) says what the validator
(msgspec structs in ``audit.validation``) does: same fields, same string limits, same
choices and defaults, the same action pattern."""

import msgspec
import pytest
from rest_framework import serializers

from audit import validation
from audit.api import ingest_schema


def _struct_fields(struct) -> dict:
    return {f.name: f for f in msgspec.inspect.type_info(struct).fields}


def _max_length(field_type) -> int | None:
    """The max_length of a (possibly optional) constrained string type, else None."""
    if isinstance(field_type, msgspec.inspect.UnionType):
        for member in field_type.types:
            found = _max_length(member)
            if found is not None:
                return found
        return None
    return getattr(field_type, "max_length", None)


def _members(field_type) -> list:
    if isinstance(field_type, msgspec.inspect.UnionType):
        return list(field_type.types)
    return [field_type]


def _choices(field_type) -> list[str]:
    (literal,) = [m for m in _members(field_type) if isinstance(m, msgspec.inspect.LiteralType)]
    return literal.values


def _takes_null(field_type) -> bool:
    return any(isinstance(m, msgspec.inspect.NoneType) for m in _members(field_type))


@pytest.mark.parametrize(
    ("struct", "serializer"),
    [
        (validation.EventIn, ingest_schema.AuditEventInputSerializer),
        (validation.Actor, ingest_schema.ActorInputSerializer),
        (validation.Target, ingest_schema.TargetInputSerializer),
    ],
)
def test_the_documented_fields_and_limits_are_the_validated_ones(struct, serializer):
    documented = serializer().fields
    validated = _struct_fields(struct)

    assert set(documented) == set(validated)
    for name, field in validated.items():
        doc = documented[name]
        plain_string = not isinstance(doc, serializers.RegexField | serializers.IPAddressField)
        if isinstance(doc, serializers.CharField) and plain_string:
            assert doc.max_length == _max_length(field.type), name
        if isinstance(doc, serializers.ChoiceField):
            assert set(doc.choices) == set(_choices(field.type)), name
        assert doc.required == field.required, name
        assert doc.allow_null == _takes_null(field.type), name


def test_the_documented_action_pattern_is_the_validated_one():
    # The schema uses ^…$ (JSON Schema regexes are ECMAScript), the validator \A…\Z.
    assert ingest_schema.ACTION_PATTERN[1:-1] == validation.ACTION_PATTERN[2:-2]


def test_the_documented_list_limit_is_the_validated_one():
    body = ingest_schema.INGEST_REQUEST
    many = [s for s in body.serializers if getattr(s, "many", False)]
    assert many and many[0].max_length == validation.MAX_EVENTS_PER_REQUEST
