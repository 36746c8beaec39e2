"""``protonpath dicom-listen``: the DICOM receiver that files images under requests."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("dicom-listen")
    def dicom_listen(
        port: int = typer.Option(None, help="TCP port (default: settings.DICOM_PORT)"),
        host: str = typer.Option(None, help="address to bind (default: settings.DICOM_BIND_ADDRESS)"),
        ae_title: str = typer.Option(None, "--ae-title", help="our AE title (default: settings.DICOM_AE_TITLE)"),
    ) -> None:
        """Receive DICOM images (C-ECHO, C-STORE, study-level C-FIND) and file them under requests
        by accession number; anything else waits in the staff inbox. Files an earlier listener left
        behind are first indexed or removed, and the transfers it left in progress marked as cut
        off (what they brought is kept)."""
        from protonpath.cli import setup_django

        setup_django()
        from protonpath.imaging.ingest import build_listener
        from protonpath.imaging.recovery import reconcile_leftovers
        from protonpath.imaging.services import close_interrupted_transfers

        leftovers = reconcile_leftovers()
        if leftovers.anything:
            typer.echo(f"left by an earlier listener: {leftovers}")
        closed = close_interrupted_transfers()
        if closed:
            typer.echo(f"{len(closed)} transfer(s) left in progress by an earlier listener marked as cut off")
        listener = build_listener(host=host, port=port, ae_title=ae_title)
        typer.echo(
            f"DICOM listener {listener.settings.ae_title} on {listener.settings.host}:{listener.settings.port}"
            " (Ctrl-C or SIGTERM to stop)"
        )
        try:
            listener.serve_forever()  # returns once stopped by SIGINT or SIGTERM, transfers closed
        except KeyboardInterrupt:  # signals not caught (serve_forever outside the main thread)
            pass
        typer.echo("stopped")
