"""The management commands of ARCHITECTURE §2: create_tenant, create_api_key (and friends)."""

import getpass
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command, load_command_class
from rest_framework.test import APIClient

from accounts.models import ApiKey, Tenant, User
from accounts.signals import account_changed

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, stdin: str = "") -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        call_command(*args, stdout=out, stderr=err)
    finally:
        sys.stdin = old_stdin
    return out.getvalue(), err.getvalue()


@pytest.fixture
def announced():
    """account_changed sends (run the command under django_capture_on_commit_callbacks)."""
    seen: list[dict] = []
    account_changed.connect(
        lambda sender, **kw: seen.append(kw), dispatch_uid="test-commands-announced", weak=False
    )
    yield seen
    account_changed.disconnect(dispatch_uid="test-commands-announced")


@pytest.mark.django_db
def test_it_creates_a_tenant_once(db, announced, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        out, _ = _run("create_tenant", "initech", "--name", "Initech")
        assert out == "tenant initech (Initech) created\n"
        out, _ = _run("create_tenant", "initech", "--name", "Initech")
        assert out == "tenant initech (Initech) exists already\n"
    assert [e["action"] for e in announced] == ["tenant.create"]


@pytest.mark.django_db
def test_without_a_name_an_existing_tenant_keeps_its_own(db):
    _run("create_tenant", "initech", "--name", "Initech")

    out, _ = _run("create_tenant", "initech")

    assert out == "tenant initech (Initech) exists already\n"
    assert Tenant.objects.get(slug="initech").name == "Initech"


@pytest.mark.django_db
def test_it_renames_an_existing_tenant_given_another_name_as_the_admin_records_it(
    db, announced, django_capture_on_commit_callbacks
):
    _run("create_tenant", "initech", "--name", "Initech")

    with django_capture_on_commit_callbacks(execute=True):
        out, _ = _run("create_tenant", "initech", "--name", "Initech Ltd")

    assert out == "tenant initech (Initech Ltd) exists already, renamed from 'Initech'\n"
    tenant = Tenant.objects.get(slug="initech")
    assert tenant.name == "Initech Ltd"
    # What tenant_save records for an admin rename, with the command line as the actor.
    [event] = [e for e in announced if e["action"] != "tenant.create"]
    assert (event["action"], event["tenant_id"], event["target_id"]) == (
        "tenant.update",
        tenant.pk,
        str(tenant.pk),
    )
    assert event["description"] == "Tenant initech renamed."
    assert event["metadata"] == {
        "changed": ["name"],
        "name": "Initech Ltd",
        "previous_name": "Initech",
    }
    assert (event["actor_type"], event["actor_id"]) == ("user", f"cli:{getpass.getuser()}")


@pytest.mark.django_db
def test_each_account_command_records_who_ran_it(
    tenant, announced, django_capture_on_commit_callbacks
):
    # They recorded "manage.py" as the actor, while the ledger and dead-letter commands
    # record --actor or the login name.
    with django_capture_on_commit_callbacks(execute=True):
        _run("create_tenant", "initech", "--actor", "ops-alice")
        key = _run(
            "create_api_key", "--tenant", "acme", "--name", "svc", "--scopes", "read",
            "--actor", "ops-bob",
        )[0].strip()  # fmt: skip
        _run("revoke_api_key", key.partition(".")[0])
        _run(
            "create_user", "--tenant", "acme", "--username", "grace", "--role", "auditor",
            "--password-stdin", "--actor", "ops-carol", stdin="Correct-horse-battery-9\n",
        )  # fmt: skip

    actors = [(e["action"], e["actor_type"], e["actor_id"]) for e in announced]
    assert actors == [
        ("tenant.create", "user", "ops-alice"),
        ("api_key.create", "user", "ops-bob"),
        ("api_key.revoke", "user", f"cli:{getpass.getuser()}"),
        ("user.create", "user", "ops-carol"),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["", "   ", "\t\n"])
def test_it_refuses_a_blank_tenant_name_naming_the_field(name):
    with pytest.raises(CommandError, match=r"^invalid name: .*empty or only whitespace"):
        _run("create_tenant", "initech", "--name", name)
    assert not Tenant.objects.exists()

    _run("create_tenant", "initech", "--name", "Initech")
    with pytest.raises(CommandError, match=r"^invalid name: "):
        _run("create_tenant", "initech", "--name", name)
    assert Tenant.objects.get(slug="initech").name == "Initech"


@pytest.mark.django_db
def test_it_strips_the_tenant_name(db):
    out, _ = _run("create_tenant", "initech", "--name", "  Initech \t")
    assert out == "tenant initech (Initech) created\n"
    out, _ = _run("create_tenant", "initech", "--name", " Initech Ltd ")
    assert out == "tenant initech (Initech Ltd) exists already, renamed from 'Initech'\n"
    assert Tenant.objects.get(slug="initech").name == "Initech Ltd"


@pytest.mark.django_db
@pytest.mark.parametrize("slug", ["has space", "ünïcode", "a/b", "x" * 65, ""])
def test_it_refuses_a_bad_tenant_slug(slug):
    with pytest.raises(CommandError, match="invalid slug"):
        _run("create_tenant", slug)
    assert not Tenant.objects.exists()


@pytest.mark.django_db
def test_it_prints_a_working_key_once_on_its_own_line(tenant):
    out, err = _run(
        "create_api_key", "--tenant", "acme", "--name", "billing", "--scopes", "ingest,read"
    )
    lines = out.splitlines()
    assert len(lines) == 1
    key = lines[0]
    prefix = key.partition(".")[0]
    api_key = ApiKey.objects.get(prefix=prefix)
    assert api_key.scopes == ["ingest", "read"]
    assert api_key.tenant == tenant
    assert prefix in err and key not in err
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert client.get("/api/v1/audit-events").status_code == 200


@pytest.mark.django_db
def test_it_sets_an_expiry(tenant):
    out, _ = _run(
        "create_api_key",
        "--tenant",
        "acme",
        "--name",
        "tmp",
        "--scopes",
        "read",
        "--expires",
        "2999-01-31",
    )
    api_key = ApiKey.objects.get(prefix=out.strip().partition(".")[0])
    assert api_key.expiry_date.isoformat() == "2999-01-31T00:00:00+00:00"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "nope", "--name", "x", "--scopes", "read"], "no tenant 'nope'"),
        (["--tenant", "acme", "--name", "x", "--scopes", "read,admin"], "scopes"),
        (["--tenant", "acme", "--name", "x", "--scopes", ","], "scopes"),
        (["--tenant", "acme", "--name", "x", "--scopes", "read", "--expires", "soon"], "ISO"),
        (
            ["--tenant", "acme", "--name", "x", "--scopes", "read", "--expires", "2001-01-01"],
            "future",
        ),
        (["--tenant", "acme", "--name", "x" * 51, "--scopes", "read"], "name"),
    ],
)
def test_it_refuses_bad_key_arguments(tenant, args, message):
    with pytest.raises(CommandError, match=message):
        _run("create_api_key", *args)
    assert not ApiKey.objects.exists()


@pytest.mark.django_db
def test_it_revokes_a_key_by_prefix(tenant):
    out, _ = _run("create_api_key", "--tenant", "acme", "--name", "x", "--scopes", "read")
    key = out.strip()
    out, _ = _run("revoke_api_key", key.partition(".")[0])
    assert "revoked" in out
    assert ApiKey.objects.get(prefix=key.partition(".")[0]).revoked
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert client.get("/api/v1/audit-events").status_code == 401
    with pytest.raises(CommandError, match="no API key"):
        _run("revoke_api_key", "zzzzzzzz")


@pytest.mark.django_db
def test_it_creates_a_user_with_a_validated_password(tenant):
    out, _ = _run(
        "create_user",
        "--tenant",
        "acme",
        "--username",
        "ada",
        "--role",
        "auditor",
        "--password-stdin",
        stdin="violet-Anchor-47-river\n",
    )
    assert "created" in out
    assert User.objects.get(username="ada").check_password("violet-Anchor-47-river")
    with pytest.raises(CommandError, match="password"):
        _run(
            "create_user",
            "--tenant",
            "acme",
            "--username",
            "bob",
            "--role",
            "auditor",
            "--password-stdin",
            stdin="123\n",
        )


@pytest.mark.django_db
def test_it_creates_a_staff_user_who_may_log_in_to_the_admin(tenant, client):
    out, _ = _run(
        "create_user",
        "--tenant",
        "acme",
        "--username",
        "grace",
        "--role",
        "auditor",
        "--staff",
        "--password-stdin",
        stdin="violet-Anchor-47-river\n",
    )

    assert "(auditor, admin access)" in out
    assert client.login(username="grace", password="violet-Anchor-47-river")
    assert client.get("/admin/audit/auditevent/").status_code == 200


def _manage(*args: str) -> subprocess.CompletedProcess:
    from testsupport.worker import test_database_url

    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": test_database_url()},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "name", ["create_tenant", "create_api_key", "revoke_api_key", "create_user"]
)
def test_it_documents_each_command(name):
    parser = load_command_class("accounts", name).create_parser("manage.py", name)
    text = parser.format_help()
    assert text.startswith("usage: manage.py " + name)
    assert len(text.splitlines()) > 5


@pytest.mark.django_db
def test_it_names_the_missing_arguments(tenant):
    with pytest.raises(CommandError, match="--name, --scopes"):
        _run("create_api_key", "--tenant", "acme")


@pytest.mark.django_db
def test_it_exits_1_with_a_clear_error_for_an_unknown_tenant():
    result = _manage(
        "create_api_key", "--tenant", "no-such-tenant-xyz", "--name", "x", "--scopes", "read"
    )
    assert result.returncode == 1
    assert "no tenant 'no-such-tenant-xyz'" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.django_db
def test_it_refuses_a_tenant_name_too_long_naming_the_field():
    with pytest.raises(CommandError, match=r"invalid name: .*at most 200 characters"):
        _run("create_tenant", "qaops-n", "--name", "n" * 300)
    assert not Tenant.objects.exists()


def test_it_exits_1_with_one_line_for_a_tenant_name_too_long():
    result = _manage("create_tenant", "qaops-n", "--name", "n" * 300)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "DataError" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "CommandError: invalid name: A tenant name has at most 200 characters (this one has 300)."
    ]


def test_it_exits_1_with_one_line_for_a_blank_tenant_name():
    result = _manage("create_tenant", "qaops-blank", "--name", "   ")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "CommandError: invalid name: A tenant name cannot be empty or only whitespace."
    ]
    assert result.stdout == ""


@pytest.mark.django_db
def test_it_refuses_to_create_the_system_tenant_by_hand():
    with pytest.raises(CommandError, match="reserved"):
        _run("create_tenant", "system", "--name", "Mine")
    assert not Tenant.objects.filter(slug="system").exists()


@pytest.mark.django_db
def test_before_the_system_tenant_exists_it_is_not_offered_for_creation():
    with pytest.raises(CommandError, match="TraceLedger's own tenant") as raised:
        _run("create_api_key", "--tenant", "system", "--name", "x", "--scopes", "ingest")
    assert "create_tenant" not in str(raised.value)


@pytest.mark.django_db
@pytest.mark.parametrize("typed", ["ACME", " acme"])
def test_a_slug_typed_in_another_case_is_pointed_to_its_lower_case(tenant, typed):
    with pytest.raises(CommandError, match="did you mean 'acme'") as raised:
        _run("create_api_key", "--tenant", typed, "--name", "x", "--scopes", "ingest")
    assert "create_tenant" not in str(raised.value)


@pytest.mark.django_db
def test_it_refuses_keys_and_users_for_the_system_tenant():
    Tenant.objects.create(slug="system", name="System")
    with pytest.raises(CommandError, match=r"tenant: .*no users and no API keys"):
        _run("create_api_key", "--tenant", "system", "--name", "x", "--scopes", "ingest")
    with pytest.raises(CommandError, match="tenant: "):
        _run(
            "create_user",
            "--tenant",
            "system",
            "--username",
            "mallory",
            "--role",
            "ingest",
            "--password-stdin",
            stdin="violet-Anchor-47-river\n",
        )
    assert not ApiKey.objects.exists()
    assert not User.objects.filter(username="mallory").exists()
