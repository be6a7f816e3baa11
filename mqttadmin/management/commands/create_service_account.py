"""`manage.py create_service_account <product-slug> <name>`: a token-only account."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from mqttadmin.audit import audit_record
from mqttadmin.models import Membership, Product
from mqttadmin.roles import Role
from mqttadmin.security import token_issue


class Command(BaseCommand):
    help = (
        "Create a service account for a product's own MQTT service and print its API "
        "token (once: only its digest is kept). It has no password (no pages) and "
        "is the only kind of account that "
        "receives the product's broker password from /mqtt-config/."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("product", help="the product's slug")
        parser.add_argument(
            "name", help="username of the account, e.g. orders-listener"
        )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        try:
            product = Product.objects.get(slug=options["product"])
        except Product.DoesNotExist:
            raise CommandError(
                f"No product with slug {options['product']!r}."
            ) from None
        user_model = get_user_model()
        if user_model.objects.filter(username=options["name"]).exists():
            raise CommandError(f"A user named {options['name']!r} exists already.")
        user = user_model(username=options["name"])
        user.set_unusable_password()
        user.save()
        Membership.objects.create(product=product, user=user, role=Role.SERVICE)
        token = token_issue(user=user)
        audit_record(
            actor=None,
            action="membership.add",
            target=product,
            changes={"user": [None, user.username], "role": [None, Role.SERVICE]},
        )
        # Printed this once: only its digest is stored.
        self.stdout.write(token)
