"""The admin's search port and the endpoint's OpenAPI description."""

import pytest
from drf_spectacular.generators import SchemaGenerator

from audit import ports
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_it_narrows_the_admins_queryset_through_the_audit_port(indexed, tenant, other_tenant):
    mine = indexed(event_id="mine", description="payroll exported")[0]
    indexed(event_id="other-word", description="pension exported")
    indexed(event_id="theirs", description="payroll exported", tenant_id=other_tenant.pk)
    scoped = AuditEvent.objects.filter(tenant=tenant)
    assert list(ports.event_search(scoped, '"payroll exported"')) == [mine]
    assert ports.event_search(scoped, "   ").count() == 2


def test_the_port_refuses_a_query_too_complex_for_postgresql_without_aborting_the_transaction(
    indexed, tenant
):
    from django.core.exceptions import ValidationError
    from django.db import transaction

    mine = indexed(description="payroll")[0]
    scoped = AuditEvent.objects.filter(tenant=tenant)

    with transaction.atomic():  # as under ATOMIC_REQUESTS: the error must not abort it
        with pytest.raises(ValidationError, match="too complex"):
            ports.event_search(scoped, "-" * 33)
        assert list(ports.event_search(scoped, "payroll")) == [mine]


def test_it_describes_the_search_endpoint_in_the_openapi_schema():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/v1/audit-events/search"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert params["q"]["required"] is True
    expected = {"q", "page_size", "cursor", "tenant", "action", "actor_id", "occurred_after"}
    assert expected <= set(params)
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(page["properties"]) == {"backend", "degraded", "next", "results"}
