from django.core.management.base import BaseCommand, CommandError

from protonpath.accounts import audit
from protonpath.accounts.models import ApiToken, AuditEvent, User


class Command(BaseCommand):
    help = "Issue an API bearer token for a user; the secret is printed once and only its digest is kept."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="cli")

    def handle(self, *args, username, name, **options):
        try:
            user = User.objects.get(username=username, is_active=True)
        except User.DoesNotExist as exc:
            raise CommandError(f"No active user {username!r}.") from exc
        token, raw = ApiToken.issue(user=user, name=name)
        audit.record(actor=None, action=AuditEvent.Action.CREATE, obj=token, summary="API token issued from the command line")
        self.stdout.write(raw)
