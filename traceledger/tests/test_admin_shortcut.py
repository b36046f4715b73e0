import uuid

import pytest
from django.contrib.contenttypes.models import ContentType

from accounts.models import User
from audit.models import AuditEvent


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
