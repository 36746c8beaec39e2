"""The ``protonpath`` command line.

Each domain adds its commands in a module of this package (``protonpath/cli/<domain>.py``)
that defines a ``register(app)`` function; :func:`build_app` imports them all.  Commands that
need Django call :func:`setup_django` first, so pure commands (planning) start fast.
"""

from __future__ import annotations

import importlib
import os
import pkgutil

import typer


def setup_django() -> None:
    """Configure Django for commands that use the database."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "protonpath.settings")
    import django

    django.setup()


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="protonpath",
        help="Run a proton therapy department: web server, DICOM, scheduling and PBS planning.",
        no_args_is_help=True,
        add_completion=False,
    )
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)
    return app
