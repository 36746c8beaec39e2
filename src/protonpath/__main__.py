"""Entry point of ``python -m protonpath`` and of the ``protonpath`` script."""

from protonpath.cli import build_app


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()
