"""The Elasticsearch document of an audit event (django-elasticsearch-dsl).

Signals are off twice over (``ELASTICSEARCH_DSL_AUTOSYNC=False`` and ``ignore_signals``):
per-save sync rolls back the audit row when Elasticsearch or RabbitMQ is down and never sees
bulk inserts (notes §4). Documents are written only by ``search.services`` in bulk.

Every filter of the list API is a ``keyword`` (exact and prefix match, sortable); words are
``text``: identifiers (action, ids, types) with a tokenizer that splits on punctuation so
``invoice.update`` matches ``invoice`` (lowercased and accent-folded, neither stemmed nor
stop-worded), prose (names, description, metadata) with the ``english`` analyzer (Porter
stemming, as PostgreSQL's Snowball stemmer nearly does). PostgreSQL splits words otherwise
in places (emails, CJK, stop words, stemmed identifiers): docs/search.md, "What differs
between the backends".
"""

from django_elasticsearch_dsl import Document, fields
from django_elasticsearch_dsl.registries import registry
from elasticsearch.dsl import analyzer, tokenizer

from audit.models import AuditEvent
from audit.services.access_log import is_access_record

INDEX_ALIAS = "traceledger-audit-events"

identifier = analyzer(
    "audit_identifier",
    tokenizer=tokenizer("audit_punctuation", "pattern", pattern=r"[^\p{L}\p{N}@]+"),
    filter=["lowercase", "asciifolding"],
)


def _keyword_with_words() -> fields.KeywordField:
    return fields.KeywordField(fields={"text": fields.TextField(analyzer=identifier)})


def metadata_text(value) -> str:
    """Every string value of a metadata object, nested ones included, space separated."""
    parts: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return " ".join(parts)


@registry.register_document
class AuditEventDocument(Document):
    id = fields.KeywordField()
    tenant = fields.LongField()
    event_id = fields.KeywordField()
    occurred_at = fields.DateField()
    sequence = fields.LongField()
    action = _keyword_with_words()
    outcome = fields.KeywordField()
    severity = fields.KeywordField()
    actor_id = _keyword_with_words()
    actor_type = fields.KeywordField()
    actor_name = fields.TextField(
        analyzer="english", fields={"raw": fields.KeywordField(ignore_above=256)}
    )
    target_id = _keyword_with_words()
    target_type = _keyword_with_words()
    target_name = fields.TextField(
        analyzer="english", fields={"raw": fields.KeywordField(ignore_above=256)}
    )
    description = fields.TextField(analyzer="english")
    metadata_text = fields.TextField(analyzer="english")

    class Index:
        name = INDEX_ALIAS
        settings = {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"}

    class Django:
        model = AuditEvent
        ignore_signals = True
        auto_refresh = False
        fields: list[str] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # django-elasticsearch-dsl 9.0 on elasticsearch 9.x: DocType.__init__ assigns
        # self._prepared_fields through elasticsearch.dsl's attribute hook, which stores it
        # in the document's data, so prepare() reads the class default [] and every document
        # would be indexed empty. Put it where prepare() looks.
        object.__setattr__(self, "_prepared_fields", self.init_prepare())

    @classmethod
    def generate_id(cls, object_instance) -> str:
        # _id = the event's id, so indexing the same event twice overwrites, never duplicates.
        return str(object_instance.id)

    def prepare_id(self, instance) -> str:
        return str(instance.id)

    def prepare_tenant(self, instance) -> int:
        return instance.tenant_id

    def prepare_metadata_text(self, instance) -> str:
        # As the PostgreSQL vector: an access record's filters and search text are not
        # searchable content (search/backends/postgresql.py).
        if is_access_record(action=instance.action, submitted_by=instance.submitted_by):
            return ""
        return metadata_text(instance.metadata)
