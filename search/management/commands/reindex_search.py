"""manage.py reindex_search [--since ISO-DATE]: rebuild the search index from PostgreSQL."""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.models import Tenant
from search.backends import index_backends
from search.backends.base import SearchBackend
from search.models import Backend
from search.purge import PurgeIncomplete, purge_catch_up
from search.selectors import ES_OUTAGES
from search.services import (
    reindex_batches,
    reindex_run_finish,
    reindex_run_start,
    reindex_total,
)
from traceledger.command_args import parse_moment


class Command(BaseCommand):
    help = (
        "Rebuild the search index from PostgreSQL, in bulk, safe while ingestion continues. "
        "Without --since, the PostgreSQL vectors are rewritten and Elasticsearch (when "
        "ELASTICSEARCH_URL is set) is rebuilt into a new index, then its alias is swapped. "
        "With --since, events received since then are (re)indexed in place. Every run "
        "then removes what retention purges left in the index (entries and documents of "
        "events that no longer exist). An interrupted run resumes when started again with "
        "the same arguments."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--since",
            metavar="DATE",
            help="Only events received at or after this ISO date (midnight UTC) or RFC 3339 "
            "time: those stored during an outage, whenever they occurred.",
        )
        parser.add_argument(
            "--backend",
            choices=[*Backend.values, "all"],
            default="all",
            help="Which index to rebuild (default: every configured one).",
        )
        parser.add_argument(
            "--batch-size", type=int, default=1000, help="Events per bulk request (default 1000)."
        )
        parser.add_argument(
            "--restart", action="store_true", help="Discard an unfinished run and start over."
        )

    def handle(self, *args, since=None, backend="all", restart=False, **options):
        if since is not None and not since.strip():
            raise CommandError("--since needs a date; leave it out to rebuild everything")
        since_at = parse_moment(since, option="--since") if since else None
        self.batch_size = options.get("batch_size", 1000)
        if not 1 <= self.batch_size <= 10_000:
            raise CommandError("--batch-size must be from 1 to 10000")
        backends = [b for b in index_backends() if backend in ("all", b.name)]
        if not backends:
            raise CommandError(
                "Elasticsearch is not configured (set ELASTICSEARCH_URL) — nothing to rebuild."
            )
        for target in backends:
            try:
                self._reindex(target, since_at, restart, options.get("verbosity", 1))
            except ES_OUTAGES as exc:
                raise CommandError(
                    f"{target.name} is unavailable ({exc.__class__.__name__}); progress is "
                    "saved: run the same command again to resume."
                ) from exc

    def _reindex(self, backend: SearchBackend, since, restart: bool, verbosity: int) -> None:
        from search.backends.elasticsearch import BulkIndexError

        self.indexed = 0
        run = reindex_run_start(backend=backend.name, since=since, restart=restart)
        if run.cursor:
            self.stdout.write(f"{backend.name}: resuming the run started {run.started_at}")
        rebuild_es = backend.name == Backend.ELASTICSEARCH and since is None
        try:
            if rebuild_es:
                self._rebuild_elasticsearch(run, backend, verbosity)
            else:
                if backend.name == Backend.ELASTICSEARCH:
                    from search.backends.elasticsearch import alias_ensure

                    alias_ensure()
                self._run_batches(run, backend, verbosity)
        except BulkIndexError as exc:
            raise CommandError(f"{exc}; run the same command again to resume.") from exc
        # After indexing, before the run is finished: an index write that raced a purge may
        # have put a purged event back, and a failure here leaves the run to be resumed.
        self._remove_purged(backend)
        reindex_run_finish(run=run)
        self.stdout.write(self.style.SUCCESS(f"{backend.name}: reindexed {self.indexed} events"))

    def _remove_purged(self, backend: SearchBackend) -> None:
        """Remove what retention purges left in this backend (entries whose event no longer
        exists; Elasticsearch documents up to each tenant's last purged sequence)."""
        try:
            removed = purge_catch_up(backend=backend)
        except PurgeIncomplete as exc:
            raise CommandError(
                f"{backend.name}: the purged events' documents were not all removed ({exc}); "
                "run the same command again to resume."
            ) from exc
        total = sum(removed.values())
        if not total:
            self.stdout.write(f"{backend.name}: nothing of purged events left in the index")
            return
        slugs = dict(Tenant.objects.filter(pk__in=removed).values_list("pk", "slug"))
        per_tenant = ", ".join(
            f"{slugs.get(tenant_id, f'tenant #{tenant_id}')} {count}"
            for tenant_id, count in sorted(removed.items())
            if count
        )
        what = "entries" if backend.name == Backend.POSTGRESQL else "documents"
        self.stdout.write(f"{backend.name}: removed {total} {what} of purged events ({per_tenant})")

    def _run_batches(self, run, backend, verbosity: int, index: str | None = None) -> int:
        done = 0
        out = self.stderr._out
        with tqdm(
            total=reindex_total(run=run),
            unit="event",
            desc=backend.name,
            # A terminal only: in a log a bar is noise.
            disable=verbosity < 1 or not getattr(out, "isatty", lambda: False)(),
            file=out,
        ) as bar:
            for count in reindex_batches(
                run=run, backend=backend, index=index, batch_size=self.batch_size
            ):
                bar.update(count)
                done += count
        self.indexed += done
        return done

    def _rebuild_elasticsearch(self, run, backend, verbosity: int) -> None:
        from search.backends.elasticsearch import alias_swap, index_create, index_name_for_rebuild

        if not run.target_index:
            run.target_index = index_name_for_rebuild()
            run.save(update_fields=["target_index"])
        index_create(name=run.target_index)
        self._run_batches(run, backend, verbosity, index=run.target_index)
        old = alias_swap(new_index=run.target_index)
        # Events indexed into the old index between our last batch and the swap: read forward
        # from the run's cursor once more, now through the alias.
        self._run_batches(run, backend, verbosity)
        if old:
            from search.backends.elasticsearch import es_client

            es_client(write=True).indices.delete(index=",".join(old))
        self.stdout.write(f"elasticsearch: alias now points at {run.target_index}")
