"""manage.py create_tenant SLUG [--name NAME] — idempotent; a different --name renames."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.services import SYSTEM_TENANT_SLUG, TENANT_NAME_MAX_LENGTH, tenant_provision
from traceledger.command_args import actor_of, add_actor_argument


class Command(BaseCommand):
    help = (
        "Creates a tenant, or renames an existing one when --name differs from its name "
        "(recorded in the tenant's trail, as an admin rename is). Idempotent: running it "
        "again changes nothing, and without --name an existing tenant keeps its name. The "
        f"slug {SYSTEM_TENANT_SLUG!r} is reserved: TraceLedger creates that tenant itself."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "slug",
            help="lower-case letters, digits, - and _, starting with a letter or a digit; "
            "at most 64 characters",
        )
        parser.add_argument(
            "--name",
            # None, not "": an explicit blank --name is an error, not "use the default".
            default=None,
            help=(
                f"display name, 1 to {TENANT_NAME_MAX_LENGTH} characters, surrounding "
                "whitespace stripped (default: the slug for a new tenant; an existing tenant "
                "keeps its name)"
            ),
        )
        add_actor_argument(parser, doing="creating or renaming it", trail="the tenant's trail")

    def handle(self, *args, slug: str, name: str | None, actor: str | None = None, **options):
        try:
            result = tenant_provision(slug=slug, name=name, actor=actor_of(actor))
        except ValidationError as exc:
            # Each bad field named on the one line; a slug is short enough to repeat, a name not.
            problems = []
            for field, messages in exc.message_dict.items():
                shown = f"slug {slug!r}" if field == "slug" else field
                problems.append(f"invalid {shown}: {' '.join(messages)}")
            raise CommandError("; ".join(problems)) from exc
        tenant = result.tenant
        if result.created:
            verb = "created"
        elif result.previous_name is not None:
            verb = f"exists already, renamed from {result.previous_name!r}"
        else:
            verb = "exists already"
        self.stdout.write(f"tenant {tenant.slug} ({tenant.name}) {verb}")
