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


def test_the_superuser_and_each_new_password_are_recorded_in_the_system_trail(
    django_capture_on_commit_callbacks,
):
    from accounts.signals import account_changed

    seen: list[dict] = []
    account_changed.connect(lambda sender, **kw: seen.append(kw), dispatch_uid="demo", weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            password, _ = _run()
            password_again, _ = _run()
    finally:
        account_changed.disconnect(dispatch_uid="demo")

    admin = User.objects.get(username="admin")
    changes = [
        (e["action"], e["tenant_id"], e["target_id"], e["metadata"].get("changed"))
        for e in seen
        if e["target_type"] == "user"
    ]
    # None: the system tenant's trail (a superuser has no tenant).
    assert changes == [
        ("user.create", None, str(admin.pk), None),
        ("user.update", None, str(admin.pk), ["password"]),
    ]
    assert not any(
        password in str(e) or password_again in str(e) for e in seen
    )  # never the password itself
