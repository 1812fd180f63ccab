"""``shoal`` commands (minimal for now: ``shoal server``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import __version__
from ..config import DEFAULT_PORT


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shoal")
def cli() -> None:
    """Shoal: fan Python functions out over containers on your own machines."""


@cli.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (non-loopback needs a token)."
)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option("--state-dir", type=click.Path(path_type=Path), default=None, help="Default: $SHOAL_HOME/server.")
@click.option("--token", envvar="SHOAL_TOKEN", default=None, help="Require this bearer token from clients.")
def server(host: str, port: int, state_dir: Path | None, token: str | None) -> None:
    """Run a standing control plane in the foreground.

    Example: shoal server --port 7811
    """
    from ..exception import InvalidError
    from ..server.main import serve

    try:
        serve(host, port, state_dir, token)
    except InvalidError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"Error: cannot listen on {host}:{port}: {exc}", err=True)
        sys.exit(1)


def main() -> None:
    cli()
