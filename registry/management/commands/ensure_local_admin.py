"""Make sure a local superuser `admin` exists, so a fresh `make run` can be logged into at once.

The password is random and printed once, when the user is created. Production must not get a default
admin: the command refuses to run with DEBUG off unless `--force` is given.
"""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

USERNAME = "admin"
EMAIL = "admin@localhost"


def _box(lines: list[str]) -> str:
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 2) + "+"
    return "\n".join([rule, *(f"| {line.ljust(width)} |" for line in lines), rule])


class Command(BaseCommand):
    help = "Create the local superuser 'admin' with a random password (printed once) if it does not exist."

    def add_arguments(self, parser):
        parser.add_argument(
            "--force",
            action="store_true",
            help="Run even with DEBUG off (never on a production system).",
        )

    def handle(self, *args, force: bool = False, **options):
        if not settings.DEBUG and not force:
            raise CommandError(
                "DEBUG is off: refusing to create a default admin. "
                "Use `manage.py createsuperuser` on a real system, or --force for a local one."
            )
        user_model = get_user_model()
        manager = user_model._default_manager
        if manager.filter(**{user_model.USERNAME_FIELD: USERNAME}).exists():
            self.stdout.write(
                f"Login '{USERNAME}' already exists. To set a new password: python manage.py changepassword {USERNAME}"
            )
            return
        password = secrets.token_urlsafe(12)
        manager.create_superuser(**{user_model.USERNAME_FIELD: USERNAME}, email=EMAIL, password=password)
        self.stdout.write(
            self.style.SUCCESS(
                _box(
                    [
                        "Local admin created (the password is shown only this once)",
                        "",
                        f"  login:    {USERNAME}",
                        f"  password: {password}",
                        "",
                        f"To change it later: python manage.py changepassword {USERNAME}",
                    ]
                )
            )
        )
