"""``shoal``: run, deploy, and inspect apps, calls and containers from the shell.

Exit codes: 0 success, 1 the user's code (or the server) failed, 2 usage error.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .. import __version__, _modal_alias
from ..config import DEFAULT_PORT, settings
from ..exception import Error, RemoteTraceback

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(f: F) -> F:
    """Short, actionable messages instead of stack traces (set SHOAL_DEBUG=1 for the full trace)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a message and exit code 1
            report_error(exc)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def report_error(exc: BaseException) -> None:
    if settings().debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
        return
    if isinstance(exc.__cause__, RemoteTraceback):
        click.echo(exc.__cause__.tb.rstrip(), err=True)
    elif not isinstance(exc, Error):  # the user's own code failed locally: its traceback is useful
        traceback.print_exception(type(exc), exc, exc.__traceback__)
        return
    click.echo(f"Error: {type(exc).__name__}: {exc}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shoal")
def cli() -> None:
    """Shoal: fan Python functions out over containers on your own machines.

    \b
    Examples:
      shoal run etl.py                 run the app's local entrypoint
      shoal run etl.py::main --n 10    pick an entrypoint and pass its options
      shoal deploy etl.py              deploy to the local server
      shoal app list                   what is running
      shoal call get fc-...            collect a spawned job's result
    """


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True}, add_help_option=False)
@click.argument("target", required=False)
@click.option("-h", "--help", "show_help", is_flag=True, help="This help; after TARGET, the entrypoint's options.")
@click.option("-m", "as_module", is_flag=True, help="TARGET is a module path (package.module[::entry]).")
@click.option("-d", "--detach", is_flag=True, help="Keep the app running after this command exits.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.option("-w", "--write-result", type=click.Path(path_type=Path), help="Write the str/bytes return value here.")
@click.pass_context
@friendly_errors
def run(
    ctx: click.Context, target: str | None, as_module: bool, detach: bool, quiet: bool, write_result: Path | None,
    show_help: bool,
) -> None:  # fmt: skip
    """Run an app: FILE.py[::ENTRY] or -m package.module[::ENTRY].

    The entrypoint's parameters become options (--my-arg VALUE; --flag/--no-flag for bools).
    A plain function as ENTRY is called with .remote().

    \b
    Examples:
      shoal run etl.py
      shoal run etl.py::main --day 2026-11-01 --dry-run
      shoal run --detach etl.py       (work continues after Ctrl-C or exit)
    """
    from .._output import enable_output
    from .targets import find_entry, import_target, parse_entry_args

    if target is None:
        if show_help:
            click.echo(ctx.get_help())
            return
        raise click.UsageError("Missing argument 'TARGET' (FILE.py[::ENTRY] or -m package.module[::ENTRY]).")
    if not detach and not show_help:
        from ..client import prestart_server

        prestart_server()  # its start runs beside the app module's imports (a detached run uses the standing one)
    _modal_alias.install()
    module, ref = import_target(target, as_module)
    entry = find_entry(module, ref)
    args, kwargs = parse_entry_args(entry, ["--help"] if show_help else ctx.args)
    _catch_interrupts()
    try:
        with enable_output(show_progress=not quiet), entry.app.run(detach=detach):
            result = entry.func(*args, **kwargs)
            if inspect.iscoroutine(result):  # an async local entrypoint: run it to the end, as Modal does
                result = asyncio.run(result)
    except KeyboardInterrupt:
        if not detach:
            raise
        sys.exit(130)  # app.run() already said, in one line, that the app goes on and how to follow it
    if write_result is not None:
        if isinstance(result, str):
            write_result.write_text(result)
        elif isinstance(result, bytes):
            write_result.write_bytes(result)
        else:
            raise click.UsageError(f"-w needs a str or bytes return value, got {type(result).__name__}")
    elif result is not None and entry.name not in entry.app.local_entrypoints and not quiet:
        click.echo(result if isinstance(result, str) else repr(result))


@cli.command()
@click.argument("target")
@click.option("-m", "as_module", is_flag=True, help="TARGET is a module path (package.module).")
@friendly_errors
def serve(target: str, as_module: bool) -> None:
    """Serve an app's web endpoints while this runs, reloading when its source files change (Ctrl-C stops it).

    \b
    Examples:
      shoal serve api.py
      shoal serve -m mypackage.api
    """
    from .._output import enable_output
    from ..client import prestart_server
    from .targets import find_app, import_target

    prestart_server()
    _modal_alias.install()
    module, _ = import_target(target, as_module)
    app = find_app(module)
    assert module.__file__ is not None
    folder = Path(module.__file__).resolve().parent
    _catch_interrupts()
    with enable_output(show_progress=False), app.run():
        click.echo(f"✓ Serving; watching {folder} for changes (Ctrl-C stops)", err=True)
        seen = _sources(folder)
        while True:
            time.sleep(RELOAD_POLL)
            now = _sources(folder)
            if now == seen:
                continue
            changed = sorted(str(p.relative_to(folder)) for p in set(now) ^ set(seen) | {
                p for p in now.keys() & seen.keys() if now[p] != seen[p]})  # fmt: skip
            seen = now
            try:
                module = importlib.reload(module)
                urls = app._adopt(find_app(module))
            except Exception as exc:  # noqa: BLE001 - a broken edit: keep serving the last good code
                click.echo(f"✗ Reload failed, still serving the previous code: {type(exc).__name__}: {exc}", err=True)
                continue
            click.echo(f"✓ Reloaded ({', '.join(changed)})", err=True)
            for line in urls:
                click.echo(f"  ├─ web endpoint {line}", err=True)


RELOAD_POLL = 0.3  # seconds between looks at the source files' modification times


def _sources(folder: Path) -> dict[Path, int]:
    """Modification times of the Python files under ``folder`` (what ``shoal serve`` watches)."""
    out = {}
    for path in folder.rglob("*.py"):
        try:
            out[path] = path.stat().st_mtime_ns
        except OSError:
            continue
    return out


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _catch_interrupts() -> None:
    """SIGINT and SIGTERM leave like Ctrl-C (a detached app goes on, others stop). SIGINT is set explicitly: a
    process started in the background by a shell (``shoal run app.py &``, a CI script) inherits it ignored, and
    Python then never raises KeyboardInterrupt, so ``kill -INT`` would do nothing."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)


@cli.command()
@click.argument("target")
@click.option("-m", "as_module", is_flag=True, help="TARGET is a module path.")
@click.option("--name", default=None, help="Deploy under this name (default: the App's name).")
@click.option("--strategy", type=click.Choice(["rolling", "recreate"]), default="rolling", show_default=True,
              help="rolling: the old version's containers finish their inputs; recreate: they stop now.")  # fmt: skip
@friendly_errors
def deploy(target: str, as_module: bool, name: str | None, strategy: str) -> None:
    """Deploy an app to the local server (started if needed); redeploying replaces it.

    \b
    Example:
      shoal deploy etl.py
      python -c "import shoal; print(shoal.Function.from_name('etl', 'process').remote(1))"
    """
    from .targets import find_app, import_target

    _modal_alias.install()
    module, _ = import_target(target, as_module)
    result = find_app(module).deploy(name, strategy=strategy)
    click.echo(f"✓ Deployed app {result.name!r} version {result.version} ({result.app_id}) on {result.url}")
    for tag in sorted(result.functions):
        web = f" => {result.web_urls[tag]}" if tag in result.web_urls else ""
        click.echo(f"  ├─ {tag}{web}")
    click.echo(f"View deployment at {result.dashboard_url}")


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "allow_interspersed_args": False}
)
@click.argument("script", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
@friendly_errors
def python(ctx: click.Context, script: Path) -> None:
    """Run a Python script as `python SCRIPT ARGS...`, with `import modal` meaning Shoal.

    This is Modal's script mode (`with app.run(): ...` under `if __name__ == "__main__":`), unchanged.

    \b
    Example:
      shoal python my_modal_script.py --limit 10
    """
    import runpy

    _modal_alias.install()
    sys.argv = [str(script), *ctx.args]
    sys.path.insert(0, str(script.resolve().parent))
    runpy.run_path(str(script), run_name="__main__")


def main() -> None:
    from . import manage

    manage.register(cli)
    cli()


__all__ = ["DEFAULT_PORT", "cli", "friendly_errors", "main"]
