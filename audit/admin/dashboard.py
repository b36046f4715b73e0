"""Numbers for the admin index page. Every query is index-backed and bounded in time.

- events per hour: the last 24 hours of ``occurred_at`` (the tenant's time index, or the
  global one for a superuser), grouped in PostgreSQL;
- ingest lag: ``stored_at - received_at`` over the events stored in the last 15 minutes
  (``stored_at``'s BRIN index); the newest stored event from the chain heads (one row per
  tenant, moved by every ingest transaction);
- outbox and dead letters: small tables by design (the relay and the drain empty them);
  dead letters only for those who may open their pages;
- DLQ depth and search state: one bounded call each to RabbitMQ and Elasticsearch.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Avg, Count, F, Max
from django.db.models.functions import TruncHour
from django.utils import timezone

from accounts.principal import principal_for_user
from audit.admin.events import can_view_events
from audit.models import ChainHead, DeadLetter, DeadLetterStatus, OutboxMessage
from audit.selectors import event_queryset, outbox_backlog
from audit.services.dead_letters import dlq_depth

logger = logging.getLogger(__name__)

HOURS = 24
LAG_WINDOW = timedelta(minutes=15)
CHART_WIDTH, CHART_HEIGHT = 480, 120
# Broker and Elasticsearch round-trips (up to the health timeout when one hangs) are
# cached briefly so that visiting the index page stays cheap.
DLQ_DEPTH_KEY, DLQ_DEPTH_TTL = "admin:dlq-depth", 15
SEARCH_STATE_KEY = "admin:search-state"


@dataclass
class HourBar:
    hour: datetime
    count: int
    x: int = 0
    y: int = 0
    height: int = 0


@dataclass
class Dashboard:
    bars: list[HourBar] = field(default_factory=list)
    total_24h: int = 0
    peak: int = 0
    lag_avg: float | None = None
    lag_max: float | None = None
    newest_stored_at: datetime | None = None
    outbox_messages: int = 0
    outbox_events: int = 0
    outbox_oldest: datetime | None = None
    # None: not shown (the user may not open the dead-letter pages).
    dead_letters_new: int | None = None
    dlq_depth: int | None = None
    search_backend: str = ""
    search_state: str = ""
    is_operator: bool = False
    bar_width: int = CHART_WIDTH // HOURS
    chart_width: int = CHART_WIDTH
    chart_height: int = CHART_HEIGHT


def dashboard_for(*, user, now: datetime | None = None) -> Dashboard | None:
    """The dashboard a user may see, or None when they may not browse events."""
    if not can_view_events(user):
        return None
    now = now or timezone.now()
    events = event_queryset(principal=principal_for_user(user)).order_by()
    board = Dashboard(is_operator=user.is_superuser)

    top = now.replace(minute=0, second=0, microsecond=0)
    first_hour = top - timedelta(hours=HOURS - 1)
    per_hour = dict(
        events.filter(occurred_at__gte=first_hour, occurred_at__lte=now)
        .annotate(hour=TruncHour("occurred_at"))
        .values("hour")
        .annotate(n=Count("pk"))
        .values_list("hour", "n")
    )
    board.bars = [
        HourBar(hour=hour, count=per_hour.get(hour, 0))
        for hour in (first_hour + timedelta(hours=i) for i in range(HOURS))
    ]
    board.total_24h = sum(bar.count for bar in board.bars)
    board.peak = max((bar.count for bar in board.bars), default=0)
    for i, bar in enumerate(board.bars):
        bar.x = i * board.bar_width
        bar.height = round(CHART_HEIGHT * bar.count / board.peak) if board.peak else 0
        bar.y = CHART_HEIGHT - bar.height

    # By when the events were stored, not by the client's occurred_at: a backfill or a
    # skewed clock made that window wrong, and a stalled worker read as "no events".
    lag = events.filter(stored_at__gte=now - LAG_WINDOW).aggregate(
        avg=Avg(F("stored_at") - F("received_at")),
        max=Max(F("stored_at") - F("received_at")),
    )
    board.lag_avg = lag["avg"].total_seconds() if lag["avg"] is not None else None
    board.lag_max = lag["max"].total_seconds() if lag["max"] is not None else None
    heads = ChainHead.objects.all()
    if not user.is_superuser:
        heads = heads.filter(tenant_id=user.tenant_id)
    board.newest_stored_at = heads.aggregate(newest=Max("updated_at"))["newest"]

    outbox = OutboxMessage.objects.all()
    dead = DeadLetter.objects.filter(status=DeadLetterStatus.NEW)
    if not user.is_superuser:
        outbox = outbox.filter(tenant_id=user.tenant_id)
        dead = dead.filter(tenant_id=user.tenant_id)
    backlog = outbox_backlog(outbox)
    board.outbox_messages = backlog["messages"]
    board.outbox_events = backlog["events"]
    board.outbox_oldest = backlog["oldest"]
    if can_view_dead_letters(user):
        # Only for those who can act on it: tenant auditors saw a count whose pages answer
        # them 403, with nothing they could do about it.
        board.dead_letters_new = dead.count()
    if user.is_superuser:
        # The broker's queue is shared by every tenant: only operators see its depth.
        board.dlq_depth = _cached_dlq_depth()

    board.search_backend, board.search_state = cache.get_or_set(
        SEARCH_STATE_KEY, search_state, DLQ_DEPTH_TTL
    )
    return board


def can_view_dead_letters(user) -> bool:
    """Whether the dead-letter admin lets ``user`` in: Django's ModelAdmin view check (view
    or change permission), which DeadLetterAdmin keeps; superusers have every permission."""
    return user.has_perm("audit.view_deadletter") or user.has_perm("audit.change_deadletter")


def _cached_dlq_depth() -> int | None:
    """The DLQ depth, at most DLQ_DEPTH_TTL seconds old ("unknown" is not cached). The
    dead-letter page itself always asks RabbitMQ."""
    depth = cache.get(DLQ_DEPTH_KEY)
    if depth is None:
        depth = dlq_depth()
        if depth is not None:
            cache.set(DLQ_DEPTH_KEY, depth, DLQ_DEPTH_TTL)
    return depth


def search_state() -> tuple[str, str]:
    """(backend, state): which engine answers searches and whether it is reachable."""
    if not settings.ELASTICSEARCH_URL:
        return "PostgreSQL full-text", "ok"
    from traceledger.health import check_search

    try:
        state = check_search()
    except Exception:
        logger.warning("Elasticsearch state unavailable", exc_info=True)
        state = "down"
    if state == "ok":
        return "Elasticsearch", "ok"
    return "Elasticsearch", "down: searches fall back to PostgreSQL full-text"
