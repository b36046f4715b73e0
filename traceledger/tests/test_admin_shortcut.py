import uuid

import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import override_settings

from accounts.models import Tenant, User
from audit.models import AuditEvent
from audit.tests.factories import events_create
from traceledger.admin_shortcut import NO_PAGE


@pytest.fixture
def staff(client, superuser):
    client.force_login(superuser)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("object_id", ["4", "not-a-uuid", str(uuid.uuid4())])
def test_the_view_on_site_route_answers_404_for_an_event_id_it_cannot_find(staff, object_id):
    """A non-UUID id raised ValidationError out of Django's shortcut view: a 500."""
    events = ContentType.objects.get_for_model(AuditEvent)

    response = staff.get(f"/admin/r/{events.pk}/{object_id}/")

    assert response.status_code == 404


@pytest.mark.django_db
def test_it_still_asks_for_a_login_first(client):
    users = ContentType.objects.get_for_model(User)

    response = client.get(f"/admin/r/{users.pk}/1/")

    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")


@pytest.mark.django_db
@override_settings(DEBUG=True)  # as make run: a 404 page then shows its message
def test_it_tells_a_tenants_staff_nothing_of_what_exists_elsewhere(client, owner, other_tenant):
    """Django's shortcut said "… don't have a get_absolute_url() method" for an object that
    exists in any tenant and "… doesn't exist" for one that does not (tenancy QA)."""
    [theirs] = events_create(tenant_id=other_tenant.pk, count=1)
    owner.is_staff = True
    owner.save()
    client.force_login(owner)
    for model, object_id in [
        (AuditEvent, theirs.pk),
        (AuditEvent, uuid.uuid4()),
        (Tenant, other_tenant.pk),
        (Tenant, 10**6),
    ]:
        content_type = ContentType.objects.get_for_model(model)
        response = client.get(f"/admin/r/{content_type.pk}/{object_id}/")
        assert response.status_code == 404
        page = response.content.decode()
        assert NO_PAGE in page
        assert "get_absolute_url" not in page and "exist" not in page
