import re

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.models import ApiKey, User

pytestmark = pytest.mark.django_db


def _run() -> tuple[str, str]:
    from io import StringIO

    out = StringIO()
    call_command("bootstrap_demo", stdout=out)
    text = out.getvalue()
    password = re.search(r"password '([^']+)'", text).group(1)
    key = re.search(r"API key:\s+(\S+)", text).group(1)
    return password, key


def test_it_prints_credentials_that_work_on_every_run():
    for _ in range(2):
        password, key = _run()
        assert User.objects.get(username="admin").check_password(password)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        assert client.get("/api/v1/audit-events?page_size=1").status_code == 200
    assert ApiKey.objects.filter(name="demo", revoked=False).count() == 1
    assert ApiKey.objects.filter(name="demo", revoked=True).count() == 1


def test_it_refuses_to_take_over_an_ordinary_account(tenant, monkeypatch):
    from django.core.management import CommandError

    from accounts.models import Role

    ada = User.objects.create_user(username="ada", password="x", tenant=tenant, role=Role.AUDITOR)
    monkeypatch.setenv("TRACELEDGER_DEMO_ADMIN", "Ada")
    with pytest.raises(CommandError, match="not a superuser"):
        call_command("bootstrap_demo")
    ada.refresh_from_db()
    assert ada.check_password("x")
