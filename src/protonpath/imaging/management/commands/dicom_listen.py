"""``manage.py dicom_listen``: run the DICOM receiver (C-ECHO, C-STORE, study-level C-FIND).

Files an earlier listener left behind are indexed or removed first (see
:func:`protonpath.imaging.recovery.reconcile_leftovers`), then the transfers it left in progress
are closed (see :func:`protonpath.imaging.services.close_interrupted_transfers`). SIGTERM and
SIGINT stop it gracefully: new associations refused, open ones given DICOM_STOP_GRACE_S to finish,
then aborted."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from protonpath.imaging.ingest import build_listener
from protonpath.imaging.recovery import reconcile_leftovers
from protonpath.imaging.services import close_interrupted_transfers


class Command(BaseCommand):
    help = "Receive DICOM images for requests (AE title, port and address from the settings)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=None, help=f"default {settings.DICOM_PORT}")
        parser.add_argument("--host", default=None, help=f"default {settings.DICOM_BIND_ADDRESS}")
        parser.add_argument("--ae-title", default=None, help=f"default {settings.DICOM_AE_TITLE}")

    def handle(self, *args, port=None, host=None, ae_title=None, **options):
        leftovers = reconcile_leftovers()
        if leftovers.anything:
            self.stdout.write(f"left by an earlier listener: {leftovers}")
        closed = close_interrupted_transfers()
        if closed:
            self.stdout.write(f"{len(closed)} transfer(s) left in progress by an earlier listener marked as cut off")
        listener = build_listener(host=host, port=port, ae_title=ae_title)
        self.stdout.write(
            f"DICOM listener {listener.settings.ae_title} on {listener.settings.host}:{listener.settings.port} "
            "(Ctrl-C or SIGTERM to stop)"
        )
        try:
            listener.serve_forever()  # returns once stopped by SIGINT or SIGTERM, transfers closed
        except KeyboardInterrupt:  # signals not caught (serve_forever outside the main thread)
            pass
        self.stdout.write("stopped")
