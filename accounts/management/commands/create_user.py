"""manage.py create_user --tenant SLUG --username NAME --role ROLE [--staff] [--password-stdin]."""

import getpass
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.management.commands._parsing import require_tenant
from accounts.models import Role
from accounts.services import user_create
from traceledger.command_args import actor_of, add_actor_argument


class Command(BaseCommand):
    help = (
        "Creates a user of a tenant with a role. The password is read from standard input "
        "(--password-stdin) or prompted for; it is checked by Django's password validators."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument(
            "--username", required=True, help="unique ignoring case; how the person logs in"
        )
        parser.add_argument(
            "--role",
            required=True,
            choices=Role.values,
            help="admin: read, ingest and manage users; auditor: read; ingest: post events",
        )
        parser.add_argument("--email", default="", help="optional contact address")
        parser.add_argument(
            "--staff",
            action="store_true",
            help="may also log in to the admin (/admin/): an auditor or admin there browses "
            "the tenant's trail, read-only",
        )
        parser.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )
        add_actor_argument(parser, doing="creating them", trail="the tenant's trail")

    def handle(self, *args, **options):
        tenant = require_tenant(options["tenant"])
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\n")
        elif sys.stdin.isatty():
            password = getpass.getpass("Password: ")
        else:
            raise CommandError("no terminal to prompt for the password: use --password-stdin")
        try:
            user = user_create(
                tenant=tenant,
                username=options["username"],
                password=password,
                role=options["role"],
                email=options["email"],
                is_staff=options["staff"],
                actor=actor_of(options.get("actor")),
            )
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
            ) from exc
        staff = ", admin access" if user.is_staff else ""
        self.stdout.write(
            f"user {user.username} ({user.role}{staff}) created in tenant {tenant.slug}"
        )
