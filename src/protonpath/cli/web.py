"""Commands around the web application: serving, demo data, and any manage.py command."""

from __future__ import annotations

import typer

from protonpath.cli import setup_django


def register(app: typer.Typer) -> None:
    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def manage(ctx: typer.Context) -> None:
        """Run a Django manage.py command, e.g. `protonpath manage migrate`."""
        setup_django()
        from django.core.management import execute_from_command_line

        execute_from_command_line(["protonpath manage", *ctx.args])

    @app.command()
    def serve(host: str = "127.0.0.1", port: int = 8000, demo: bool = typer.Option(False, help="Load demo data first.")) -> None:
        """Migrate the database and serve the web application (development server)."""
        setup_django()
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)
        if demo:
            call_command("seed_demo")
        call_command("runserver", f"{host}:{port}")

    @app.command("issue-token")
    def issue_token(username: str, name: str = "cli") -> None:
        """Issue an API bearer token for USERNAME (printed once)."""
        setup_django()
        from django.core.management import call_command

        call_command("issue_api_token", username, name=name)
