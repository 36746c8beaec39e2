"""``manage.py sweep_plans``: mark failed the plans whose worker stopped (run at start-up)."""

from django.core.management.base import BaseCommand

from protonpath.treatment.services import sweep_stale_plans


class Command(BaseCommand):
    help = "Mark failed (and re-runnable) the plans whose worker stopped reporting."

    def handle(self, *args, **options):
        n = sweep_stale_plans()
        self.stdout.write(f"{n} plan(s) marked failed")
