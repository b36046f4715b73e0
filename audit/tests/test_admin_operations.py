"""Operators in the admin: dead letters (pull, replay, discard), DLQ depth, outbox backlog."""

import re
import socket
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.signals import Actor
from audit.models import DeadLetter, DeadLetterStatus, OutboxMessage
from audit.services.ingest import CONFLICT_REASON
from audit.tests.ingest_support import make_event, purge_queues, queue_depth, wait_until
from traceledger.celery import app
from traceledger.queues import DLQ, DLX_EXCHANGE, INGEST_QUEUE

DEAD_LETTERS = reverse("admin:audit_deadletter_changelist")
PULL = reverse("admin:audit_deadletter_pull")
OUTBOX = reverse("admin:audit_outboxmessage_changelist")


@pytest.fixture
def recorded(monkeypatch):
    """Audit events submitted for operator actions (submission itself is the ingest side's;
    the browser test runs it for real with a worker)."""
    calls = []
    monkeypatch.setattr(
        "audit.services.submission.record_system_event", lambda **kw: calls.append(kw)
    )
    return calls


@pytest.fixture
def clean_queues():
    purge_queues()
    yield
    purge_queues()


@pytest.fixture
def operator(superuser, client):
    client.force_login(superuser)
    return client


def dead_letter(tenant, **overrides) -> DeadLetter:
    fields = {
        "message_id": f"task-{DeadLetter.objects.count() + 1}",
        "tenant_id": tenant.pk,
        "task_name": "audit.ingest_batch",
        "payload": {"tenant_id": tenant.pk, "events": [make_event()], "request_id": "r-1"},
        "event_count": 1,
        "reason": "failed after 2 retries: OperationalError",
        "exception": "Traceback (most recent call last):\n  ...\nOperationalError: lock timeout",
        "attempts": 3,
        "original_queue": "audit.ingest",
        "first_failed_at": datetime(2026, 3, 1, 12, tzinfo=UTC),
        "last_failed_at": datetime(2026, 3, 1, 12, 5, tzinfo=UTC),
    }
    fields.update(overrides)
    return DeadLetter.objects.create(**fields)


def send_to_dlq(tenant_id: int) -> str:
    """A task message straight into the DLQ, as RabbitMQ would dead-letter it."""
    result = app.send_task(
        "audit.ingest_batch",
        kwargs={"tenant_id": tenant_id, "events": [make_event()], "request_id": "r-dlq"},
        exchange=DLX_EXCHANGE,
        routing_key=DLQ.routing_key,
    )
    return result.id


def test_the_list_shows_reason_exception_summary_attempts_failures_and_status(
    operator, tenant, monkeypatch
):
    monkeypatch.setattr("audit.admin.operations.dlq_depth", lambda: 3)
    dead_letter(tenant)

    response = operator.get(DEAD_LETTERS)

    body = response.content.decode()
    assert response.status_code == 200
    for text in (
        "failed after 2 retries: OperationalError",
        "OperationalError: lock timeout",  # the exception's last line, not the traceback
        "2026-03-01 12:00:00 UTC",  # to the second, with the zone (traceledger/formats)
        "2026-03-01 12:05:00 UTC",
        '<td class="field-attempts">3</td>',
        "new",
    ):
        assert text in body, text
    assert "Traceback" not in body
    assert "3 waiting" in body


def test_the_detail_shows_the_payload_pretty_printed_and_cannot_be_saved(operator, tenant):
    letter = dead_letter(tenant)

    response = operator.get(reverse("admin:audit_deadletter_change", args=[letter.pk]))

    body = response.content.decode()
    assert '<pre class="tl-json">{\n  &quot;events&quot;: [' in body
    assert 'name="_save"' not in body
    assert operator.get(reverse("admin:audit_deadletter_add")).status_code == 403
    delete = reverse("admin:audit_deadletter_delete", args=[letter.pk])
    assert operator.post(delete, {"post": "yes"}).status_code == 403


def test_discarding_marks_the_letters_and_records_the_operator_action(operator, tenant, recorded):
    letters = [dead_letter(tenant), dead_letter(tenant)]

    response = operator.post(
        DEAD_LETTERS,
        {"action": "discard_selected", "_selected_action": [letters[0].pk], "post": "yes"},
        follow=True,
    )

    assert "Discarded 1 of 1 selected dead letter(s)." in response.content.decode()
    letters[0].refresh_from_db()
    letters[1].refresh_from_db()
    assert letters[0].status == DeadLetterStatus.DISCARDED
    assert letters[0].status_changed_by == "root"
    assert letters[1].status == DeadLetterStatus.NEW
    # The same actor identity as the person's other actions (accounts' actor_for_user), so
    # filtering the trail by actor finds all of them.
    user = response.context["request"].user
    assert [(c["action"], c["actor_id"], c["actor_type"], c["actor_name"]) for c in recorded] == [
        ("dead_letter.discard", str(user.pk), "user", "root")
    ]


def test_replaying_republishes_to_the_ingest_queue_and_records_it(
    operator, tenant, recorded, clean_queues
):
    letter = dead_letter(tenant)

    response = operator.post(
        DEAD_LETTERS,
        {"action": "replay_selected", "_selected_action": [letter.pk], "post": "yes"},
        follow=True,
    )

    assert "Replayed 1 of 1 selected dead letter(s) to audit.ingest." in response.content.decode()
    letter.refresh_from_db()
    assert letter.status == DeadLetterStatus.REPLAYED
    wait_until(lambda: queue_depth(INGEST_QUEUE.name) == 1, timeout=5, what="the replayed batch")
    assert [c["action"] for c in recorded] == ["dead_letter.replay"]


@pytest.mark.parametrize(
    ("action", "question"),
    [("replay_selected", "Replay these dead letters?"), ("discard_selected", "Discard these")],
)
def test_replay_and_discard_ask_first_and_change_nothing_until_confirmed(
    operator, tenant, recorded, action, question
):
    letters = [dead_letter(tenant), dead_letter(tenant)]

    response = operator.post(
        DEAD_LETTERS, {"action": action, "_selected_action": [letters[0].pk], "index": "0"}
    )

    assert response.status_code == 200
    assert response.templates[0].name == "admin/action_confirmation.html"
    body = response.content.decode()
    assert "Are you sure?" in body and question in body
    assert f"dead letter #{letters[0].pk}:" in body
    assert f"dead letter #{letters[1].pk}:" not in body
    assert f'name="_selected_action" value="{letters[0].pk}"' in body
    assert f'name="action" value="{action}"' in body
    assert 'name="select_across" value="0"' in body
    assert 'name="post" value="yes"' in body
    assert f'href="{DEAD_LETTERS}" class="button cancel-link"' in body
    assert {letter.status for letter in DeadLetter.objects.all()} == {DeadLetterStatus.NEW}
    assert recorded == []


def test_select_all_asks_for_every_letter_of_the_filter_and_confirms_that_set(
    operator, tenant, recorded
):
    mine = [dead_letter(tenant, reason="poison") for _ in range(3)]
    other = dead_letter(tenant, reason="other")
    filtered = f"{DEAD_LETTERS}?reason=poison"
    # "Select all 3": the page's boxes are ticked and select_across is set.
    go = {
        "action": "discard_selected",
        "_selected_action": [mine[0].pk],
        "select_across": "1",
        "index": "0",
    }

    question = operator.post(filtered, go)

    body = question.content.decode()
    assert "3 dead letters (every one matching the list's filters)" in body
    assert all(f"dead letter #{letter.pk}:" in body for letter in mine)
    assert f"dead letter #{other.pk}:" not in body
    assert 'name="select_across" value="1"' in body
    assert 'href="/admin/audit/deadletter/?reason=poison"' in body

    # The page's form has no action attribute: it posts back to the filtered URL.
    assert '<form method="post">' in body
    operator.post(
        filtered,
        {
            "action": "discard_selected",
            "_selected_action": [mine[0].pk],
            "select_across": "1",
            "post": "yes",
        },
    )
    statuses = dict(DeadLetter.objects.values_list("pk", "status"))
    assert [statuses[letter.pk] for letter in mine] == [DeadLetterStatus.DISCARDED] * 3
    assert statuses[other.pk] == DeadLetterStatus.NEW


def test_pull_from_rabbitmq_drains_the_dlq_reports_the_count_and_records_it(
    operator, tenant, recorded, clean_queues
):
    task_id = send_to_dlq(tenant.pk)
    wait_until(lambda: queue_depth(DLQ.name) == 1, timeout=5, what="the dead letter")
    assert "1 waiting" in operator.get(DEAD_LETTERS).content.decode()

    response = operator.post(PULL, follow=True)

    body = response.content.decode()
    assert "Pulled 1 dead letter(s) from RabbitMQ." in body
    assert "0 waiting" in body
    letter = DeadLetter.objects.get()
    assert letter.message_id == task_id
    assert letter.payload["tenant_id"] == tenant.pk
    assert [(c["action"], c["metadata"]["arrived"]) for c in recorded] == [("dead_letter.drain", 1)]
    assert (recorded[0]["actor_id"], recorded[0]["actor_name"]) == (
        str(response.context["request"].user.pk),
        "root",
    )


def test_pull_is_a_csrf_checked_post(superuser, clean_queues):
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)

    assert client.post(PULL).status_code == 403  # no CSRF token
    # A typed or bookmarked URL pulls nothing and says where the button is.
    response = client.get(PULL, follow=True)
    assert response.redirect_chain == [(DEAD_LETTERS, 302)]
    assert "“Pull from RabbitMQ” button" in response.content.decode()


def test_pull_from_an_unreachable_broker_says_so_without_trying_to_drain(
    operator, monkeypatch, recorded
):
    """The drain's own connect retried with backoff: 12 s (refused) to 33 s (black-holed)
    of a web thread before the operator heard anything."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    closed_url = f"amqp://guest:guest@127.0.0.1:{closed}//"
    monkeypatch.setattr("audit.services.dead_letters.draining._broker_url", lambda: closed_url)
    drains = []
    monkeypatch.setattr(
        "audit.services.dead_letters.dead_letters_drain", lambda **kw: drains.append(kw)
    )

    response = operator.post(PULL, follow=True)

    assert response.status_code == 200
    assert "Could not pull from RabbitMQ: it is unreachable" in response.content.decode()
    assert drains == [] and recorded == []


def test_pull_from_an_empty_queue_says_so(operator, recorded, clean_queues):
    response = operator.post(PULL, follow=True)

    assert "Nothing to pull: the queue is empty." in response.content.decode()
    assert recorded == []


def test_pull_reports_an_unreachable_broker_instead_of_failing(operator, monkeypatch, recorded):
    def down(**kwargs):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr("audit.services.dead_letters.dlq_depth", lambda: 3)
    monkeypatch.setattr("audit.services.dead_letters.dead_letters_drain", down)

    response = operator.post(PULL, follow=True)

    assert response.status_code == 200
    assert "Could not pull from RabbitMQ: ConnectionRefusedError" in response.content.decode()
    assert recorded == []


def test_tenant_staff_see_only_their_tenants_dead_letters_and_cannot_pull(
    client, tenant, other_tenant, owner
):
    from django.contrib.auth.models import Permission

    owner.is_staff = True
    owner.save()
    owner.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_deadletter", "change_deadletter"])
    )
    dead_letter(tenant, reason="acme reason")
    dead_letter(other_tenant, reason="globex reason")
    client.force_login(owner)

    body = client.get(DEAD_LETTERS).content.decode()

    assert "acme reason" in body and "globex reason" not in body
    assert "Pull from RabbitMQ" not in body
    assert "In RabbitMQ" not in body  # the queue's depth counts every tenant's letters
    assert client.post(PULL).status_code == 403


def test_tenant_staff_cannot_name_another_tenant_on_the_dead_letter_list(
    client, tenant, other_tenant, owner
):
    """``tenant_id=<theirs>`` listed nothing, as if that tenant had no letters."""
    from django.contrib.auth.models import Permission

    owner.is_staff = True
    owner.save()
    owner.user_permissions.add(*Permission.objects.filter(codename="view_deadletter"))
    dead_letter(tenant, reason="acme reason")
    client.force_login(owner)

    for name in ("tenant_id", "tenant_id__exact"):
        response = client.get(DEAD_LETTERS, {name: other_tenant.pk})
        assert response.status_code == 302 and response.url == DEAD_LETTERS
        body = client.get(response.url).content.decode()
        assert f"{name}={other_tenant.pk}: you see only your own tenant" in body
        assert "acme reason" in body
    # Their own by that spelling is no filter of this list either: named, then the list.
    own = client.get(DEAD_LETTERS, {"tenant_id": tenant.pk}, follow=True).content.decode()
    assert "tenant_id: not a filter of this list" in own and "acme reason" in own


@pytest.fixture
def tenant_operator(client, owner):
    """The tenant's admin, with admin access and the dead-letter permissions."""
    from django.contrib.auth.models import Permission

    owner.is_staff = True
    owner.save()
    owner.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_deadletter", "change_deadletter"])
    )
    client.force_login(owner)
    return client


@pytest.mark.parametrize(
    ("action", "recorded_action"),
    [("discard_selected", "dead_letter.discard"), ("replay_selected", "dead_letter.replay")],
)
def test_tenant_staffs_discard_or_replay_is_recorded_in_their_own_trail_and_the_systems(
    tenant_operator, tenant, recorded, clean_queues, action, recorded_action
):
    letter = dead_letter(tenant)

    tenant_operator.post(
        DEAD_LETTERS, {"action": action, "_selected_action": [letter.pk], "post": "yes"}
    )

    letter.refresh_from_db()
    assert letter.status != DeadLetterStatus.NEW
    # tenant_id None is the system tenant's trail (record_system_event's convention).
    assert len(recorded) == 2
    owner_id = str(tenant.users.get(username="owner").pk)
    assert {(c["action"], c["tenant_id"], c["actor_id"], c["actor_name"]) for c in recorded} == {
        (recorded_action, None, owner_id, "owner"),
        (recorded_action, tenant.pk, owner_id, "owner"),
    }
    assert all(c["metadata"]["dead_letter_ids"] == [letter.pk] for c in recorded)


def test_a_superusers_discard_is_recorded_in_the_system_trail_only(operator, tenant, recorded):
    letter = dead_letter(tenant)

    operator.post(
        DEAD_LETTERS,
        {"action": "discard_selected", "_selected_action": [letter.pk], "post": "yes"},
    )

    assert [(c["action"], c["tenant_id"]) for c in recorded] == [("dead_letter.discard", None)]


def test_the_service_refuses_another_tenants_letters_to_tenant_staff(
    tenant, other_tenant, recorded
):
    from audit.services.dead_letters import UnknownDeadLetters, dead_letters_discard

    theirs = dead_letter(other_tenant)

    with pytest.raises(UnknownDeadLetters):
        dead_letters_discard(
            ids=[theirs.pk], actor=Actor(id="owner", type="user", name="owner"), tenant_id=tenant.pk
        )

    theirs.refresh_from_db()
    assert theirs.status == DeadLetterStatus.NEW
    assert recorded == []


def test_staff_without_dead_letter_permissions_cannot_open_the_page(client, teammate):
    teammate.is_staff = True
    teammate.save()
    client.force_login(teammate)

    page = client.get(DEAD_LETTERS)
    assert page.status_code == 403
    # Not Django's bare "403 Forbidden": what it is, a way back, and the site's icon.
    body = page.content.decode()
    assert "You may not open this page" in body
    assert '<a href="/admin/">Back to the start page</a>' in body
    assert 'rel="icon"' in body


def test_the_outbox_is_listed_read_only_with_its_backlog(operator, tenant):
    OutboxMessage.objects.create(tenant_id=tenant.pk, payload={"events": []}, event_count=40)
    OutboxMessage.objects.create(tenant_id=tenant.pk, payload={"events": []}, event_count=2)

    response = operator.get(OUTBOX)

    assert "2 message(s), 42 event(s)" in response.content.decode()
    assert operator.get(reverse("admin:audit_outboxmessage_add")).status_code == 403
    assert response.context["action_form"] is None or "delete_selected" not in str(
        response.context["action_form"]
    )


def test_a_pattern_lookup_in_a_hand_edited_url_is_named_and_dropped_not_a_500(operator):
    response = operator.get(DEAD_LETTERS, {"reason__regex": "(", "status__exact": "new"})

    assert response.url == f"{DEAD_LETTERS}?status__exact=new"
    assert [str(m) for m in operator.get(response.url).context["messages"]] == [
        "Filter ignored: reason__regex: pattern (regex) lookups are not offered"
    ]


def test_replaying_letters_that_hold_no_batch_says_why_before_and_after(
    operator, tenant, recorded, clean_queues
):
    """Letters whose payload is no ingest batch stay new: the operator is told to discard
    them, on the confirmation page and in the result, instead of "Replayed 0 of 2"."""
    not_json = dead_letter(tenant, payload={"body": "not json"}, task_name="")
    done = dead_letter(tenant, status=DeadLetterStatus.DISCARDED)
    good = dead_letter(tenant)
    selection = {"action": "replay_selected", "_selected_action": [not_json.pk, done.pk, good.pk]}

    question = operator.post(DEAD_LETTERS, {**selection, "index": "0"}).content.decode()
    result = operator.post(DEAD_LETTERS, {**selection, "post": "yes"}, follow=True)

    assert "These will be skipped: 1 no longer new" in question
    assert "1 not replayable: the payload is not an ingest batch" in question
    body = result.content.decode()
    assert "Replayed 1 of 3 selected dead letter(s) to audit.ingest. Skipped: 1 no longer" in body
    assert "discard them once read" in body
    not_json.refresh_from_db()
    assert not_json.status == DeadLetterStatus.NEW
    assert [c["metadata"]["dead_letter_ids"] for c in recorded] == [[good.pk]]


def test_a_letter_of_a_tenant_that_does_not_exist_is_skipped_not_replayed_again(
    operator, tenant, recorded, clean_queues
):
    """Its replay only made a new dead letter, with nothing pointing back to this one."""
    orphan = dead_letter(tenant, payload={"tenant_id": 987654321, "events": [make_event()]})
    good = dead_letter(tenant)
    selection = {"action": "replay_selected", "_selected_action": [good.pk, orphan.pk]}

    result = operator.post(DEAD_LETTERS, {**selection, "post": "yes"}, follow=True)

    body = result.content.decode()
    assert "Replayed 1 of 2 selected dead letter(s)" in body
    assert "1 of a tenant that does not exist" in body
    orphan.refresh_from_db()
    assert orphan.status == DeadLetterStatus.NEW


def test_a_conflicting_duplicate_is_skipped_not_replayed_into_a_new_letter(
    operator, tenant, recorded, clean_queues
):
    """Its event_id is stored with other content, which never changes: the replay was
    reported as done and only made a new letter with the same reason."""
    conflict = dead_letter(tenant, reason=CONFLICT_REASON)
    good = dead_letter(tenant)
    selection = {"action": "replay_selected", "_selected_action": [conflict.pk, good.pk]}

    question = operator.post(DEAD_LETTERS, {**selection, "index": "0"}).content.decode()
    result = operator.post(DEAD_LETTERS, {**selection, "post": "yes"}, follow=True)

    assert "These will be skipped: 1 conflicting duplicate(s)" in question
    body = result.content.decode()
    assert "Replayed 1 of 2 selected dead letter(s) to audit.ingest. Skipped: 1 conflicting" in body
    assert "post the event under a new event_id" in body
    assert [m.level_tag for m in result.context["messages"]] == ["warning"]
    conflict.refresh_from_db()
    assert conflict.status == DeadLetterStatus.NEW
    assert [c["metadata"]["dead_letter_ids"] for c in recorded] == [[good.pk]]


def test_a_discard_that_changes_nothing_says_so(operator, tenant, recorded):
    done = dead_letter(tenant, status=DeadLetterStatus.REPLAYED)

    response = operator.post(
        DEAD_LETTERS,
        {"action": "discard_selected", "_selected_action": [done.pk], "post": "yes"},
        follow=True,
    )

    assert [(m.level_tag, str(m)) for m in response.context["messages"]] == [
        (
            "warning",
            "Discarded none of the 1 selected dead letter(s): nothing changed. Skipped: 1 no "
            "longer new (replayed or discarded already).",
        )
    ]


def test_a_replay_that_sends_nothing_says_so(operator, tenant, recorded, clean_queues):
    done = dead_letter(tenant, status=DeadLetterStatus.DISCARDED)
    conflict = dead_letter(tenant, reason=CONFLICT_REASON)
    selection = {"action": "replay_selected", "_selected_action": [done.pk, conflict.pk]}

    response = operator.post(DEAD_LETTERS, {**selection, "post": "yes"}, follow=True)

    [(level, text)] = [(m.level_tag, str(m)) for m in response.context["messages"]]
    assert level == "warning"
    assert text.startswith(
        "Replayed none of the 2 selected dead letter(s): nothing was sent. Skipped: 1 no longer"
    )
    assert "to audit.ingest" not in text.split("Skipped")[0]
    assert recorded == []


def test_discarding_letters_no_longer_new_says_why_they_were_skipped(operator, tenant, recorded):
    done = dead_letter(tenant, status=DeadLetterStatus.REPLAYED)
    fresh = dead_letter(tenant)

    question = operator.post(
        DEAD_LETTERS,
        {"action": "discard_selected", "_selected_action": [done.pk, fresh.pk], "index": "0"},
    ).content.decode()
    assert "These will be skipped: 1 no longer new (replayed or discarded already)." in question

    response = operator.post(
        DEAD_LETTERS,
        {"action": "discard_selected", "_selected_action": [done.pk, fresh.pk], "post": "yes"},
        follow=True,
    )

    assert [(m.level_tag, str(m)) for m in response.context["messages"]] == [
        (
            "warning",
            "Discarded 1 of 2 selected dead letter(s). Skipped: 1 no longer new "
            "(replayed or discarded already).",
        )
    ]


def test_a_letter_the_user_cannot_see_is_not_said_to_be_deleted(
    tenant_operator, tenant, other_tenant
):
    theirs = dead_letter(other_tenant)

    for object_id in (theirs.pk, theirs.pk + 1000):
        response = tenant_operator.get(
            reverse("admin:audit_deadletter_change", args=[object_id]), follow=True
        )

        assert response.redirect_chain[-1][0] == DEAD_LETTERS
        assert [str(m) for m in response.context["messages"]] == [
            f"No dead letter with ID “{object_id}” in the letters you can see."
        ]


@pytest.mark.parametrize(
    "payload",
    [
        {"tenant_id": 10**30, "events": []},  # beyond 64 bits: orjson cannot write it
        {"tenant_id": True, "events": []},  # a bool is an int to Python
        {"tenant_id": "this tenant", "events": [{"metadata": {"n": 2**64}}]},
    ],
    ids=["huge-tenant", "bool-tenant", "huge-number-inside"],
)
def test_a_letter_the_publisher_cannot_write_is_skipped_not_a_500(
    operator, tenant, recorded, clean_queues, payload
):
    if payload["tenant_id"] == "this tenant":
        payload = {**payload, "tenant_id": tenant.pk}
    odd = dead_letter(tenant, payload=payload)
    good = dead_letter(tenant)
    selection = {"action": "replay_selected", "_selected_action": [good.pk, odd.pk]}

    result = operator.post(DEAD_LETTERS, {**selection, "post": "yes"}, follow=True)

    assert result.status_code == 200
    assert "Replayed 1 of 2 selected dead letter(s)" in result.content.decode()
    odd.refresh_from_db()
    good.refresh_from_db()
    assert (odd.status, good.status) == (DeadLetterStatus.NEW, DeadLetterStatus.REPLAYED)


@pytest.mark.parametrize(
    "changelist",
    [
        DEAD_LETTERS,
        reverse("admin:accounts_user_changelist"),
        reverse("admin:audit_auditevent_changelist"),
    ],
)
def test_a_hand_made_selection_that_is_not_an_id_is_refused_not_a_500(operator, changelist):
    action = {
        DEAD_LETTERS: "discard_selected",
    }.get(changelist, "delete_selected")
    if "auditevent" in changelist:
        action = "export_csv"

    response = operator.post(
        changelist, {"action": action, "_selected_action": ["abc"], "index": "0"}, follow=True
    )

    assert response.status_code == 200
    assert "The selection holds an invalid" in response.content.decode()


@pytest.mark.parametrize("step", [{"index": "0"}, {"post": "yes"}], ids=["ask", "hand-made-yes"])
@pytest.mark.parametrize("who", ["operator", "tenant_operator"])
def test_a_selection_of_letters_the_user_cannot_see_is_not_offered_for_confirmation(
    request, recorded, other_tenant, who, step
):
    """Nothing is ever deleted, and another tenant's letter must not read as one that
    existed: not "None of the selected dead letters exist (any more)"; nor, posted straight
    with post=yes, "Discarded none of the 0 selected"."""
    client = request.getfixturevalue(who)
    theirs = dead_letter(other_tenant).pk if who == "tenant_operator" else 987654

    response = client.post(
        DEAD_LETTERS,
        {"action": "discard_selected", "_selected_action": [str(theirs)], **step},
        follow=True,
    )

    body = response.content.decode()
    assert "Are you sure?" not in body
    assert "None of the selected dead letters is among those you can see: nothing to do." in body
    assert recorded == []


def test_letters_name_their_tenant_or_say_it_does_not_exist(operator, tenant):
    known = dead_letter(tenant)
    dead_letter(tenant, tenant_id=987654, payload={"tenant_id": 987654, "events": []})

    listing = operator.get(DEAD_LETTERS).content.decode()
    filtered = operator.get(DEAD_LETTERS, {"tenant": str(tenant.pk)})
    detail = operator.get(reverse("admin:audit_deadletter_change", args=[known.pk]))

    assert f'<td class="field-tenant">{tenant.slug}</td>' in listing
    assert '<td class="field-tenant">#987654 (no such tenant)</td>' in listing
    assert [letter.pk for letter in filtered.context["cl"].result_list] == [known.pk]
    assert "<h1>Dead letter</h1>" in detail.content.decode()


# A column in a query's select list (before its first FROM), not one it only tests in a
# WHERE (the replay preview counts letters by jsonb_typeof(payload -> ...) in the database).
_SELECTED_PAYLOAD = re.compile(r'"audit_(deadletter|outboxmessage)"\."(payload|headers)"')


def payload_fetches_during(call):
    """``(result, fetches)``: what ``call()`` returned, and the SQL of its queries that fetch
    a payload or headers column. Read at once: the next request empties the query log."""
    with CaptureQueriesContext(connection) as queries:
        result = call()
    sql = [query["sql"] for query in queries.captured_queries]
    assert any('"audit_deadletter"' in s or '"audit_outboxmessage"' in s for s in sql), sql
    return result, [s for s in sql if _SELECTED_PAYLOAD.search(s.split(" FROM ", 1)[0])]


def test_the_list_the_confirmation_page_and_the_discard_never_fetch_payloads(
    operator, tenant, recorded
):
    """A letter may be a whole batch (~5 MiB): 50 on a page cost 1.3 s and 350 MB, a
    "select all" discard of 110 some 700 MB, for columns none of these pages show."""
    letters = [dead_letter(tenant) for _ in range(3)]
    go = {"action": "discard_selected", "_selected_action": [letters[0].pk], "select_across": "1"}

    listing, listing_fetches = payload_fetches_during(lambda: operator.get(DEAD_LETTERS))
    question, question_fetches = payload_fetches_during(
        lambda: operator.post(DEAD_LETTERS, {**go, "index": "0"})
    )
    _, discard_fetches = payload_fetches_during(
        lambda: operator.post(DEAD_LETTERS, {**go, "post": "yes"})
    )

    assert listing.status_code == 200 and listing_fetches == []
    assert question.templates[0].name == "admin/action_confirmation.html"
    assert all(f"dead letter #{letter.pk}:" in question.content.decode() for letter in letters)
    assert question_fetches == []
    assert {letter.status for letter in DeadLetter.objects.all()} == {DeadLetterStatus.DISCARDED}
    assert [c["metadata"]["dead_letter_ids"] for c in recorded] == [[x.pk for x in letters]]
    assert discard_fetches == []


def test_the_replay_confirmation_page_and_the_outbox_list_do_not_fetch_payloads(operator, tenant):
    letter = dead_letter(tenant)
    OutboxMessage.objects.create(tenant_id=tenant.pk, payload={"events": []}, event_count=1)
    go = {"action": "replay_selected", "_selected_action": [letter.pk], "index": "0"}

    question, question_fetches = payload_fetches_during(lambda: operator.post(DEAD_LETTERS, go))
    outbox, outbox_fetches = payload_fetches_during(lambda: operator.get(OUTBOX))

    assert "Replay these dead letters?" in question.content.decode()
    assert question_fetches == []
    assert outbox.status_code == 200 and outbox_fetches == []


def test_a_replay_of_more_letters_than_one_chunk_reads_payloads_a_chunk_at_a_time(
    operator, tenant, recorded, clean_queues, monkeypatch
):
    """Every selected letter is still republished and marked, and the replay recorded once;
    but no query holds more than a chunk of payloads."""
    monkeypatch.setattr("audit.services.dead_letters.actions.REPLAY_CHUNK", 2)
    letters = [dead_letter(tenant, event_count=1) for _ in range(5)]
    done = dead_letter(tenant, status=DeadLetterStatus.DISCARDED)
    selection = [letter.pk for letter in [*letters, done]]

    go = {"action": "replay_selected", "_selected_action": selection, "post": "yes"}

    _, fetches = payload_fetches_during(lambda: operator.post(DEAD_LETTERS, go))

    assert "Replayed 5 of 6 selected dead letter(s)" in operator.get(DEAD_LETTERS).content.decode()
    statuses = dict(DeadLetter.objects.values_list("pk", "status"))
    assert [statuses[letter.pk] for letter in letters] == [DeadLetterStatus.REPLAYED] * 5
    assert statuses[done.pk] == DeadLetterStatus.DISCARDED
    wait_until(lambda: queue_depth(INGEST_QUEUE.name) == 5, timeout=5, what="5 replayed batches")
    assert [(c["metadata"]["dead_letter_ids"], c["metadata"]["event_count"]) for c in recorded] == [
        ([letter.pk for letter in letters], 5)
    ]
    # The payloads of 2, 2 and 1 letters, never all at once; none of the discarded letter's.
    ids_per_fetch = [len(re.search(r"IN \(([^)]*)\)", sql).group(1).split(",")) for sql in fetches]
    assert ids_per_fetch == [2, 2, 1]


@pytest.mark.parametrize(
    "params",
    [
        {"tenant__exact": "2"},  # tenant is a filter here, not a field: ?e=1 before
        {"tenant": "x"},
        {"attempts__in": "a"},
        {"drained_at__isnull": "maybe"},  # read as true: 0 results before
        {"drained_at__range": "2026-01-01,2026-12-31"},
    ],
)
def test_an_unusable_dead_letter_filter_is_named_and_dropped_the_others_kept(
    operator, tenant, params
):
    kept = dead_letter(tenant, reason="poison")
    dead_letter(tenant, reason="other")

    first = operator.get(DEAD_LETTERS, {**params, "reason": "poison"})
    page = operator.get(first.url)

    assert first.url == f"{DEAD_LETTERS}?reason=poison"
    assert [letter.pk for letter in page.context["cl"].result_list] == [kept.pk]
    [message] = [str(m) for m in page.context["messages"]]
    assert message.startswith(f"Filter ignored: {next(iter(params))}")


def test_tenant_staffs_tenant_parameter_naming_another_tenant_is_refused_on_dead_letters(
    tenant_operator, tenant, other_tenant
):
    mine = dead_letter(tenant)

    first = tenant_operator.get(DEAD_LETTERS, {"tenant": str(other_tenant.pk)})
    page = tenant_operator.get(first.url)
    own = tenant_operator.get(DEAD_LETTERS, {"tenant": str(tenant.pk)})

    assert first.url == DEAD_LETTERS
    assert [str(m) for m in page.context["messages"]] == [
        f"Filter ignored: tenant={other_tenant.pk}: you see only your own tenant's dead letters"
    ]
    assert [letter.pk for letter in own.context["cl"].result_list] == [mine.pk]


def test_an_unusable_outbox_filter_is_named_and_dropped(operator, tenant):
    OutboxMessage.objects.create(tenant_id=tenant.pk, payload={"events": []}, event_count=1)

    first = operator.get(OUTBOX, {"attempts__in": "a,b"})

    assert first.url == OUTBOX
    [message] = [str(m) for m in operator.get(first.url).context["messages"]]
    assert message.startswith("Filter ignored: attempts__in: ")


def test_a_nul_in_a_dead_letter_filter_is_named_and_dropped_not_the_apis_json_400(operator, tenant):
    dead_letter(tenant)

    response = operator.get(f"{DEAD_LETTERS}?reason=a%00b&status__exact=new", follow=True)

    assert response.redirect_chain == [(f"{DEAD_LETTERS}?status__exact=new", 302)]
    assert [str(m) for m in response.context["messages"]] == [
        "Filter ignored: reason: must not contain NUL (\\u0000)"
    ]


@pytest.mark.parametrize(
    ("unconfirmed", "said"),
    [
        (
            {1, 2},
            "Replayed 2 of 2 selected dead letter(s) into the outbox: RabbitMQ did not confirm "
            "them, so they were accepted there and the outbox relay publishes them to "
            "audit.ingest once RabbitMQ is back.",
        ),
        (
            {2},
            "Replayed 2 of 2 selected dead letter(s): 1 to audit.ingest, 1 into the outbox "
            "(RabbitMQ did not confirm them; the outbox relay publishes those to audit.ingest "
            "once RabbitMQ is back).",
        ),
    ],
)
def test_a_replay_while_rabbitmq_does_not_confirm_says_the_batches_went_to_the_outbox(
    operator, tenant, recorded, monkeypatch, unconfirmed, said
):
    """It said "Replayed 1 ... to audit.ingest" although the batch was in the outbox."""
    from audit.publisher import PublishError

    calls = []

    def publish(payload, **kwargs):
        calls.append(payload)
        if len(calls) in unconfirmed:
            raise PublishError("no confirm within 2 s")

    monkeypatch.setattr("audit.services.submission.publish_ingest_batch", publish)
    letters = [dead_letter(tenant), dead_letter(tenant)]
    go = {"action": "replay_selected", "_selected_action": [x.pk for x in letters], "post": "yes"}

    response = operator.post(DEAD_LETTERS, go, follow=True)

    [message] = response.context["messages"]
    assert str(message) == said
    assert message.level_tag == "warning"
    assert OutboxMessage.objects.count() == len(unconfirmed)
    assert {x.status for x in DeadLetter.objects.all()} == {DeadLetterStatus.REPLAYED}
    assert [c["action"] for c in recorded] == ["dead_letter.replay"]


def test_the_letter_and_outbox_pages_offer_no_history_that_is_always_empty(operator, tenant):
    """Django's History said "This object doesn't have a change history" for a letter just
    replayed: replays and discards are in the trail, and on the page (who, when)."""
    letter = dead_letter(tenant)
    message = OutboxMessage.objects.create(tenant_id=tenant.pk, payload={}, event_count=1)

    pages = [
        operator.get(reverse("admin:audit_deadletter_change", args=[letter.pk])),
        operator.get(reverse("admin:audit_outboxmessage_change", args=[message.pk])),
    ]

    for page in pages:
        assert page.status_code == 200
        assert "/history/" not in page.content.decode()
        assert 'class="object-tools"' not in page.content.decode()
