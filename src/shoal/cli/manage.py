"""``shoal server|app|function|call|container``: look at and steer what the server runs."""

from __future__ import annotations

import datetime
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..config import DEFAULT_PORT
from ..protocol import routes
from .main import friendly_errors

BACKENDS = ["local", "ray"]  # backends.KINDS, named here so that the CLI starts without importing the backends


def _request(method: str, path: str, body: dict[str, Any] | None = None, packed: bool = False) -> Any:
    from .._sync import run_sync
    from ..client import client_for, configured_url

    url = configured_url()
    if url is None:
        raise click.ClickException("No Shoal server is running. Start one with `shoal server start`.")
    return run_sync(client_for(url).request(method, path, body, packed=packed))


def _when(ts: float | None) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*[str(v) for v in r])
    console = Console()
    if not console.is_terminal:  # piped: no terminal width to fit, so never cut an id to fit 80 columns
        console = Console(width=1000)
    console.print(table)


def _duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration like 30s, 10m, 2h or 1d")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


# ---- server ---------------------------------------------------------------------------------------


@click.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address (non-loopback needs a token).")
@click.option("--port", default=None, type=int, help=f"Default: {DEFAULT_PORT}, or any free port when it is taken.")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None, help="Default: $SHOAL_HOME/server.")
@click.option("--token", envvar="SHOAL_TOKEN", default=None, help="Require this bearer token from clients.")
@click.pass_context
def server(ctx: click.Context, host: str, port: int | None, state_dir: Path | None, token: str | None) -> None:
    """Run the control plane in the foreground, or manage it as a background daemon.

    \b
    Examples:
      shoal server                 foreground, on 127.0.0.1:7811
      shoal server start           background; log under $SHOAL_HOME
      shoal server status | stop

    Each SHOAL_HOME has its own standing server; clients of that home find it (whatever its port) and
    never use another home's.
    """
    ctx.obj = {"host": host, "port": port, "token": token}
    if ctx.invoked_subcommand is not None:
        return
    from ..exception import InvalidError
    from ..server.main import serve

    try:
        serve(host, DEFAULT_PORT if port is None else port, state_dir, token, kind="standing")
    except InvalidError as exc:
        raise click.UsageError(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from exc


@server.command("start")
@click.option("--host", default=None, help="Address (non-loopback needs a token).")
@click.option("--port", default=None, type=int, help=f"Default: {DEFAULT_PORT}, or any free port when it is taken.")
@click.option("--token", envvar="SHOAL_TOKEN", default=None, help="Require this bearer token from clients.")
@click.option("--backend", type=click.Choice(BACKENDS), envvar="SHOAL_BACKEND", default="local",
              show_default=True, help="Where containers run: here, or on a Ray cluster (needs a token).")  # fmt: skip
@click.option("--ray-address", envvar="SHOAL_RAY_ADDRESS", default="auto", show_default=True,
              help="The Ray backend's cluster: auto (the one this machine is part of) or HOST:PORT.")  # fmt: skip
@click.option("--store", envvar="SHOAL_STORE", default=None, metavar="URL",
              help="postgresql://... to keep the state in PostgreSQL, where other servers (standbys) can share it; "
              "default: a SQLite file in this home. Prefer SHOAL_STORE for a URL with a password.")  # fmt: skip
@click.option("--shared-dir", envvar="SHOAL_SHARED_DIR", default=None, metavar="DIR",
              help="With --store: blobs, volumes and the secrets key, in a directory all servers reach.")  # fmt: skip
@click.pass_context
@friendly_errors
def server_start(
    ctx: click.Context, host: str | None, port: int | None, token: str | None, backend: str, ray_address: str,
    store: str | None, shared_dir: str | None,
) -> None:  # fmt: skip
    """Start this home's standing server in the background (no-op when it runs)."""
    from .. import _daemon
    from ..server.listen import is_loopback

    ctx.obj.update({k: v for k, v in {"host": host, "port": port, "token": token}.items() if v is not None})

    if not is_loopback(ctx.obj["host"]) and not ctx.obj["token"]:
        raise click.UsageError(f"Refusing to serve {ctx.obj['host']} without a token: set SHOAL_TOKEN.")
    if backend == "ray" and not ctx.obj["token"]:
        raise click.UsageError("The Ray backend needs a token (its containers run on other machines): set SHOAL_TOKEN.")
    status = _daemon.start(ctx.obj["host"], ctx.obj["port"], ctx.obj["token"], backend, ray_address, store, shared_dir)
    if status.standby:
        click.echo(f"✓ Shoal server of {_home()} standing by (pid {status.pid}, log {status.log_file}): another server "
                   f"is active over its store; this one serves at {status.url} when that one stops.")  # fmt: skip
        return
    click.echo(f"✓ Shoal server of {_home()} running at {status.url} (pid {status.pid}, log {status.log_file})")


@server.command("stop")
@friendly_errors
def server_stop() -> None:
    """Stop the background server."""
    from .. import _daemon

    click.echo("✓ Stopped." if _daemon.stop() else f"No standing server of {_home()} was running.")


@server.command("status")
@click.pass_context
def server_status(ctx: click.Context) -> None:
    """Say whether the background server is running (exit 1 when not)."""
    from .. import _daemon

    status = _daemon.status()
    if status.running:
        click.echo(f"running at {status.url} (pid {status.pid}, log {status.log_file}) for {_home()}")
        info = _request("GET", routes.SERVER)
        yes = {True: "yes", False: "no"}
        click.echo(
            f"backend: {info['backend']} (sandbox: {yes[info['sandbox']]}, volumes: {yes[info['mounts']]}, "
            f"GPUs: {info['gpus']}, CPUs: {info['cpus']:g}, memory: {info['memory_mib'] / 1024:.1f} GiB)"
        )
        demand = ", ".join(f"{n} {fn}" for fn, n in sorted(info.get("demand", {}).items())) or "none"
        click.echo(f"pending demand: {demand}; containers waiting for capacity: {info.get('waiting_for_capacity', 0)}")
        usage = info.get("usage") or {}
        if usage:
            click.echo(f"reserved: {usage['cpu_reserved']:g} of {info['cpus']:g} CPUs, "
                       f"{usage['memory_reserved_mib']} of {info['memory_mib']} MiB memory, "
                       f"{usage['gpus_in_use']} of {info['gpus']} GPUs ({usage['gpu_types']})")  # fmt: skip
        if info.get("trouble"):
            click.echo(f"trouble: {info['trouble']}")
        click.echo(f"store: {info.get('store', 'sqlite')}")
        click.echo(f"dashboard: {status.url}{routes.DASHBOARD}/apps")
    elif status.standby:
        click.echo(f"standing by (pid {status.pid}, log {status.log_file}) for {_home()}: another server is active "
                   f"over its store; this one serves at {status.url} when that one stops")  # fmt: skip
        sys.exit(1)
    else:
        click.echo(f"not running (no standing server of {_home()})")
        sys.exit(1)


def _home() -> str:
    from ..config import settings

    return str(settings().home)


# ---- apps -----------------------------------------------------------------------------------------


@click.group()
def app() -> None:
    """List, stop, and read the logs of apps."""


@app.command("list")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def app_list(as_json: bool) -> None:
    """Apps on the server, newest first."""
    apps = _request("GET", routes.APPS)["apps"]
    if as_json:
        click.echo(json.dumps(apps, indent=2))
        return
    rows = [[a["app_id"], a["name"], a["mode"], a["state"], a["containers"], a["version"] or "-",
             _when(a["created_at"]), a["stop_reason"] or "", _schedules(a)] for a in apps]  # fmt: skip
    _table("Apps", ["id", "name", "mode", "state", "containers", "version", "created", "stop reason", "schedules"],
           rows)  # fmt: skip


def _schedules(app: dict[str, Any]) -> str:
    """Each schedule of an app in one line: function, schedule, last and next fire (next only while it runs)."""
    parts = []
    for s in app.get("schedules") or []:
        upcoming = f", next {_when(s['next_fire'])}" if app["state"] == "RUNNING" else ""
        parts.append(f"{s['function']}: {s['schedule']} (last {_when(s['last_fire'])}{upcoming})")
    return "; ".join(parts)


@app.command("stop")
@click.argument("ref")
@friendly_errors
def app_stop(ref: str) -> None:
    """Stop an app (NAME or ID): its containers stop and its pending inputs fail with a clear error."""
    resp = _request("POST", routes.path(routes.APP_STOP, ref=ref), {"reason": "stopped with `shoal app stop`"})
    click.echo(f"✓ Stopped {resp['app_id']}")


@app.command("logs")
@click.argument("ref")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the app stops.")
@click.option("--since", default=None, help="Only output newer than this (30s, 10m, 2h, 1d).")
@click.option("--tail", type=int, default=None, help="Only the last N entries.")
@click.option("--until", default=None, help="Only output older than this (30s, 10m, 2h, 1d ago).")
@click.option("--search", default=None, help="Only lines containing this text (any case).")
@click.option("--source", type=click.Choice(["stdout", "stderr", "system"]), default=None,
              help="Only the function's stdout, its stderr, or Shoal's own lines.")  # fmt: skip
@click.option("--function", "function_tag", default=None, help="Only this function's containers (its name).")
@click.option("--function-call", "call_id", default=None, help="Only lines of this call (fc-...).")
@click.option("--container", "container_id", default=None, help="Only this container's lines.")
@friendly_errors
def app_logs(
    ref: str, follow: bool, since: str | None, tail: int | None, until: str | None, search: str | None,
    source: str | None, function_tag: str | None, call_id: str | None, container_id: str | None,
) -> None:  # fmt: skip
    """Print an app's container output (NAME or ID), all of it or filtered (Modal's `app logs` options)."""
    filters = {"until_ts": time.time() - _duration(until) if until else None, "search": search, "source": source,
               "function": function_tag, "call": call_id, "container": container_id}  # fmt: skip
    if any(v is not None for v in filters.values()):
        since_ts = time.time() - _duration(since) if since else None
        _filtered_logs(ref, {k: v for k, v in {**filters, "since_ts": since_ts}.items() if v is not None}, tail, follow)
        return
    body: dict[str, Any] = {"since": 0, "wait": 0}
    if tail is not None:
        body["tail"] = tail
    if since is not None:
        body["since_ts"] = time.time() - _duration(since)
    first = _request("POST", routes.path(routes.APP_LOGS, ref=ref), body, packed=True)
    seq = _print_rows(first, 0)
    if first.get("earlier"):
        click.echo(f"(the last {len(first['logs'])} entries; {first['earlier']} earlier ones not shown: "
                   "drop --tail/--since to see all)", err=True)  # fmt: skip
    while tail is None:  # the whole log (or all of it since --since), page by page
        page = {"since": seq, "wait": 0, **({"since_ts": body["since_ts"]} if "since_ts" in body else {})}
        resp = _request("POST", routes.path(routes.APP_LOGS, ref=ref), page, packed=True)
        if not resp["logs"]:
            break
        seq = _print_rows(resp, seq)
    while follow:
        resp = _request("POST", routes.path(routes.APP_LOGS, ref=ref), {"since": seq, "wait": 10.0}, packed=True)
        seq = _print_rows(resp, seq)
        if resp["state"] != "RUNNING" and not resp["logs"]:
            break


def _filtered_logs(ref: str, query: dict[str, Any], tail: int | None, follow: bool) -> None:
    """The app's lines that pass ``query`` (POST /logs): the last ``tail``, or all of them page by page; then new
    ones while ``follow``."""
    query = {"app": ref, **query}
    if tail is not None:
        resp = _request("POST", routes.LOGS, {**query, "tail": tail}, packed=True)
        seq = _print_lines(resp["logs"], 0)
    else:
        seq = 0
        while True:
            resp = _request("POST", routes.LOGS, {**query, "after": seq, "limit": 1000}, packed=True)
            seq = _print_lines(resp["logs"], seq)
            if len(resp["logs"]) < 1000:
                break
    while follow and "until_ts" not in query:
        resp = _request("POST", routes.LOGS, {**query, "after": seq, "wait": 10.0}, packed=True)
        seq = _print_lines(resp["logs"], seq)
        if resp["state"] != "RUNNING" and not resp["logs"]:
            break


def _print_lines(rows: list[list[Any]], seq: int) -> int:
    for row_seq, _ts, stream, text, *_ in rows:
        seq = max(seq, row_seq)
        (sys.stderr if stream == "stderr" else sys.stdout).write(text)
    sys.stdout.flush()
    return seq


def _print_rows(resp: dict[str, Any], seq: int) -> int:
    for row_seq, stream, text, _container in resp["logs"]:
        seq = max(seq, row_seq)
        (sys.stderr if stream == "stderr" else sys.stdout).write(text)
    sys.stdout.flush()
    return seq


@app.command("rollover")
@click.argument("ref")
@click.option("--strategy", type=click.Choice(["rolling", "recreate"]), default="rolling", show_default=True,
              help="rolling: each container finishes its inputs first; recreate: they stop at once.")  # fmt: skip
@friendly_errors
def app_rollover(ref: str, strategy: str) -> None:
    """Give a deployed app fresh containers without a code change (Modal's `app rollover`)."""
    replaced = _request("POST", routes.path(routes.APP_ROLLOVER, ref=ref), {"strategy": strategy})["replaced"]
    click.echo(f"✓ {replaced} container{'s' if replaced != 1 else ''} of {ref} replaced ({strategy}); new ones start "
               "as inputs arrive")  # fmt: skip


@app.command("history")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def app_history(ref: str, as_json: bool) -> None:
    """Deployments of an app, newest first."""
    resp = _request("GET", routes.path(routes.APP_HISTORY, ref=ref))
    if as_json:
        click.echo(json.dumps(resp["history"], indent=2))
        return
    rows = [[h["version"], _when(h["created_at"]), ", ".join(sorted(h["functions"]))] for h in resp["history"]]
    _table(f"History of {resp['app']['name']}", ["version", "deployed", "functions"], rows)
    if resp["app"].get("schedules"):
        click.echo(f"Schedules: {_schedules(resp['app'])}")


# ---- functions and calls --------------------------------------------------------------------------


@click.group()
def function() -> None:
    """Inspect functions."""


@function.command("calls")
@click.argument("ref", metavar="APP/FUNCTION")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def function_calls(ref: str, as_json: bool) -> None:
    """Recent calls of a function with their progress."""
    app_ref, _, tag = ref.partition("/")
    if not tag:
        raise click.BadParameter("expected APP/FUNCTION", param_hint="APP/FUNCTION")
    _show_calls(ref, routes.path(routes.APP_FUNCTION_CALLS, ref=app_ref, tag=tag), as_json)


CALL_COLUMNS = ["id", "function", "kind", "status", "done", "failed", "pending", "created", "duration"]


def _show_calls(ref: str, route: str, as_json: bool) -> None:
    """The calls ``route`` lists (an app's or a function's), as a table or JSON."""
    calls = _request("GET", route)["calls"]
    if as_json:
        click.echo(json.dumps(calls, indent=2))
        return
    _table(f"Calls of {ref}", CALL_COLUMNS, [_call_row(c) for c in calls])


def _call_row(c: dict[str, Any]) -> list[Any]:
    total = c["num_inputs"] if c["num_inputs"] is not None else c["submitted"]
    end = c["finished_at"] or time.time()
    return [c["call_id"], c["function_name"], c["kind"], c["status"], c["done"] - c["failed"], c["failed"],
            total - c["done"], _when(c["created_at"]), f"{end - c['created_at']:.1f}s"]  # fmt: skip


@click.group()
def call() -> None:
    """Collect, inspect, or cancel any function call by id (fc-...)."""


@call.command("get")
@click.argument("call_id")
@click.option("--timeout", type=float, default=None, help="Seconds to wait (default: until done).")
@friendly_errors
def call_get(call_id: str, timeout: float | None) -> None:
    """Print a call's result (a list of results for spawn_map/map calls)."""
    from .._sync import run_sync
    from ..calls import FunctionCall

    handle = FunctionCall.from_id(call_id)  # any server of this home that knows it, embedded ones included
    if handle.num_inputs() == 1 and run_sync(handle._info())["kind"] in ("spawn", "remote"):
        click.echo(repr(handle.get(timeout=timeout)))
    else:
        click.echo(repr(list(handle.iter())))


@call.command("list")
@click.argument("ref", metavar="APP[/FUNCTION]")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def call_list(ref: str, as_json: bool) -> None:
    """Recent calls of an app, or of one of its functions: status, counts, duration."""
    app_ref, _, tag = ref.partition("/")
    if tag:
        _show_calls(ref, routes.path(routes.APP_FUNCTION_CALLS, ref=app_ref, tag=tag), as_json)
    else:
        _show_calls(ref, routes.path(routes.APP_CALLS, ref=app_ref), as_json)


@call.command("status")
@click.argument("call_id")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def call_status(call_id: str, as_json: bool) -> None:
    """A call's status, its inputs per status, and its failures grouped by error (messages that differ only in
    numbers or ids are one group), with the first indexes of each."""
    from .._sync import run_sync
    from ..calls import FunctionCall

    handle = FunctionCall.from_id(call_id)
    info = run_sync(handle._info())
    failures = run_sync(handle._failures())
    if as_json:
        click.echo(json.dumps({**info, "failures": failures}, indent=2))
        return
    _table(f"{info['function_name']} {call_id}", CALL_COLUMNS, [_call_row(info)])
    if failures["statuses"]:
        click.echo("ended without success: " + ", ".join(f"{n} {s}" for s, n in sorted(failures["statuses"].items())))
    for group in failures["groups"]:
        first = ", ".join(str(i) for i in group["indexes"])
        click.echo(f"  {group['count']} x {group['type']}: {group['message']}  (first inputs: {first})")
    if failures["groups"]:
        click.echo(f"An input's attempts and traceback: {routes.dashboard_url(handle._url or '', 'calls', call_id)}")
        click.echo(f"Fixed the cause? Run the failed inputs again: shoal call retry {call_id}")


@call.command("retry")
@click.argument("call_id")
@click.option("--failed/--no-failed", default=True, show_default=True, help="Inputs that failed (or crashed).")
@click.option("--cancelled", is_flag=True, help="Also inputs that were cancelled.")
@click.option("--timed-out", is_flag=True, help="Also inputs that timed out.")
@friendly_errors
def call_retry(call_id: str, failed: bool, cancelled: bool, timed_out: bool) -> None:
    """Run again the inputs of a finished call that failed (and those cancelled or timed out, when asked), under
    the same call id: its results that succeeded stay."""
    from ..calls import FunctionCall

    queued = FunctionCall.from_id(call_id).retry_failed(failed=failed, cancelled=cancelled, timed_out=timed_out)
    if queued:
        click.echo(f"✓ {queued} input{'s' if queued != 1 else ''} of {call_id} queued again; follow with "
                   f"`shoal call status {call_id}`")  # fmt: skip
    else:
        click.echo(f"Nothing to retry: no input of {call_id} ended that way")


@call.command("cancel")
@click.argument("call_id")
@click.option("--terminate-containers", is_flag=True, help="Also kill the containers running its inputs.")
@friendly_errors
def call_cancel(call_id: str, terminate_containers: bool) -> None:
    """Cancel a call's unfinished inputs."""
    from ..calls import FunctionCall

    FunctionCall.from_id(call_id).cancel(terminate_containers=terminate_containers)
    click.echo(f"✓ Cancelled {call_id}")


# ---- containers -----------------------------------------------------------------------------------


@click.group()
def container() -> None:
    """List containers, read their output, stop them."""


@container.command("list")
@click.option("--all", "include_stopped", is_flag=True, help="Include stopped containers.")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def container_list(include_stopped: bool, as_json: bool) -> None:
    """Containers, newest first."""
    rows = _request("GET", routes.CONTAINERS + f"?all={int(include_stopped)}")["containers"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = [[c["container_id"], c["app_name"], c["function"], _container_state(c), c["running_inputs"],
              c.get("served", 0), c.get("node") or "-", _when(c["created_at"]), c["stop_reason"] or ""]
             for c in rows]  # fmt: skip
    _table("Containers", ["id", "app", "function", "state", "running", "served", "node", "started", "stop reason"],
           table)  # fmt: skip


def _container_state(row: dict[str, Any]) -> str:
    waited = row.get("waiting_for_capacity_s")
    if waited is None:
        return str(row["state"])
    return f"{row.get('waiting_for') or 'waiting for capacity'} ({waited:.0f}s)"


@container.command("logs")
@click.argument("container_id")
@click.option("-f", "--follow", is_flag=True)
@friendly_errors
def container_logs(container_id: str, follow: bool) -> None:
    """Print a container's output."""
    seq = _print_rows(
        _request("POST", routes.path(routes.CONTAINER_LOGS, container_id=container_id), {"since": 0}, packed=True), 0
    )
    while follow:
        resp = _request(
            "POST",
            routes.path(routes.CONTAINER_LOGS, container_id=container_id),
            {"since": seq, "wait": 10.0},
            packed=True,
        )
        seq = _print_rows(resp, seq)
        if resp["state"] == "STOPPED" and not resp["logs"]:
            break


@container.command("stop")
@click.argument("container_id")
@click.option("--graceful", is_flag=True, help="Take no new inputs, finish those it holds, then exit.")
@friendly_errors
def container_stop(container_id: str, graceful: bool) -> None:
    """Stop a container; inputs it was running are retried elsewhere (with --graceful, it finishes them)."""
    _request("POST", routes.path(routes.CONTAINER_STOP, container_id=container_id), {"graceful": graceful})
    click.echo(f"✓ Stopping {container_id}" + (" once its inputs are done" if graceful else ""))


@container.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("container_id")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Kill the command after so many seconds.")
@friendly_errors
def container_exec(container_id: str, command: tuple[str, ...], timeout: float) -> None:
    """Run a command in a running container: shoal container exec ID -- ls -la /tmp

    It runs in the container's sandbox, with its environment and working directory, without a terminal or input;
    its output is printed when it ends, and this exits with its exit code."""
    from .._ids import new_id
    from .._sync import run_sync
    from ..client import CALLER, Client, _token, configured_url
    from ..protocol.messages import Command, CommandResult

    url = configured_url()
    if url is None:
        raise click.ClickException("No Shoal server is running. Start one with `shoal server start`.")
    client = Client(url, _token(url), CALLER, timeout=timeout + 30)
    path = routes.path(routes.CONTAINER_EXEC, container_id=container_id)
    order = Command(new_id("exec"), list(command), timeout)
    result = run_sync(client.call("POST", path, order, CommandResult))
    sys.stdout.buffer.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(result.stderr)
    if result.code is None:
        raise click.ClickException(f"The command did not end by itself: {result.error}.")
    sys.exit(result.code)


# ---- secrets and tokens ---------------------------------------------------------------------------


@click.group()
def secret() -> None:
    """Named secrets for Secret.from_name (values are never shown again)."""


@secret.command("create")
@click.argument("name")
@click.argument("pairs", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--force", is_flag=True, help="Replace an existing secret of that name.")
@friendly_errors
def secret_create(name: str, pairs: tuple[str, ...], force: bool) -> None:
    """Create a secret: shoal secret create db-creds USER=app PASSWORD=..."""
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="KEY=VALUE")
        values[key] = value
    _request("POST", routes.SECRETS, {"name": name, "values": values, "overwrite": force})
    click.echo(f"✓ Created secret {name!r} with keys {', '.join(sorted(values))}")


@secret.command("list")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def secret_list(as_json: bool) -> None:
    """Secret names and their keys (never the values)."""
    rows = _request("GET", routes.SECRETS)["secrets"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _table("Secrets", ["name", "keys", "created"], [[r["name"], ", ".join(r["keys"]), _when(r["created_at"])]
                                                      for r in rows])  # fmt: skip


@secret.command("delete")
@click.argument("name")
@friendly_errors
def secret_delete(name: str) -> None:
    _request("POST", routes.path(routes.SECRET_DELETE, name=name))
    click.echo(f"✓ Deleted secret {name!r}")


@click.group()
def token() -> None:
    """Client tokens of a server that has its own token (SHOAL_TOKEN); needs that token."""


@token.command("create")
@click.argument("name")
@friendly_errors
def token_create(name: str) -> None:
    """Issue a client token (printed once): clients use it as SHOAL_TOKEN."""
    click.echo(_request("POST", routes.TOKENS, {"name": name})["token"])


@token.command("list")
@friendly_errors
def token_list() -> None:
    rows = _request("GET", routes.TOKENS)["tokens"]
    _table("Tokens", ["name", "created", "revoked"], [[r["name"], _when(r["created_at"]), _when(r["revoked_at"])]
                                                       for r in rows])  # fmt: skip


@token.command("revoke")
@click.argument("name")
@friendly_errors
def token_revoke(name: str) -> None:
    """Revoke a client token: requests with it are refused from now on."""
    _request("POST", routes.path(routes.TOKEN_REVOKE, name=name))
    click.echo(f"✓ Revoked {name!r}")


# ---- volumes --------------------------------------------------------------------------------------


@click.group()
def volume() -> None:
    """Create, list and move files in and out of volumes."""


@volume.command("list")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def volume_list(as_json: bool) -> None:
    rows = _request("GET", routes.VOLUMES)["volumes"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _table("Volumes", ["name", "created"], [[r["name"], _when(r["created_at"])] for r in rows])


@volume.command("create")
@click.argument("name")
@friendly_errors
def volume_create(name: str) -> None:
    _request("POST", routes.VOLUMES, {"name": name, "create_if_missing": True})
    click.echo(f"✓ Volume {name!r} ready")


@volume.command("delete")
@click.argument("name")
@friendly_errors
def volume_delete(name: str) -> None:
    _request("POST", routes.path(routes.VOLUME_DELETE, name=name))
    click.echo(f"✓ Deleted volume {name!r}")


@volume.command("ls")
@click.argument("name")
@click.argument("path", default="/")
@click.option("-r", "--recursive", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def volume_ls(name: str, path: str, recursive: bool, as_json: bool) -> None:
    """List files: shoal volume ls results /runs -r"""
    entries = _request("POST", routes.path(routes.VOLUME_LS, name=name), {"path": path, "recursive": recursive})[
        "entries"
    ]
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    for e in entries:
        click.echo(e["path"] + ("/" if e["type"] == "directory" else ""))


@volume.command("put")
@click.argument("name")
@click.argument("local", type=click.Path(exists=True, path_type=Path))
@click.argument("remote", default="/")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@friendly_errors
def volume_put(name: str, local: Path, remote: str, force: bool) -> None:
    """Upload a file or directory: shoal volume put data ./inputs /inputs"""
    from ..volume import Volume

    with Volume.from_name(name).batch_upload(force=force) as batch:
        if local.is_dir():
            batch.put_directory(local, remote)
        else:
            batch.put_file(local, remote.rstrip("/") + "/" + local.name if remote.endswith("/") else remote)
    click.echo(f"✓ Uploaded {local} to {name}:{remote}")


@volume.command("get")
@click.argument("name")
@click.argument("remote")
@click.argument("local", type=click.Path(path_type=Path), default=".")
@friendly_errors
def volume_get(name: str, remote: str, local: Path) -> None:
    """Download a file: shoal volume get results /out/1.txt ./1.txt (use - for stdout)"""
    from ..volume import Volume

    data = b"".join(Volume.from_name(name).read_file(remote))
    if str(local) == "-":
        sys.stdout.buffer.write(data)
        return
    target = local / Path(remote).name if local.is_dir() else local
    target.write_bytes(data)
    click.echo(f"✓ {name}:{remote} -> {target}")


@volume.command("rm")
@click.argument("name")
@click.argument("remote")
@click.option("-r", "--recursive", is_flag=True)
@friendly_errors
def volume_rm(name: str, remote: str, recursive: bool) -> None:
    _request("POST", routes.path(routes.VOLUME_RM, name=name), {"path": remote, "recursive": recursive})
    click.echo(f"✓ Removed {name}:{remote}")


@volume.command("cp")
@click.argument("name")
@click.argument("paths", nargs=-1, required=True)
@friendly_errors
def volume_cp(name: str, paths: tuple[str, ...]) -> None:
    """Copy within a volume: shoal volume cp results /a.txt /b.txt /backup/"""
    if len(paths) < 2:
        raise click.BadParameter("give one or more sources and a destination")
    _request("POST", routes.path(routes.VOLUME_CP, name=name), {"sources": list(paths[:-1]), "destination": paths[-1]})
    click.echo(f"✓ Copied into {name}:{paths[-1]}")


@click.command("dashboard")
@click.option("--print", "only_print", is_flag=True, help="Print the URL; do not open a browser.")
@friendly_errors
def dashboard(only_print: bool) -> None:
    """Open the server's dashboard in a browser (or print its URL)."""
    from ..client import configured_url, dashboard_link

    url = configured_url()
    if url is None:
        raise click.ClickException("No Shoal server is running. Start one with `shoal server start`.")
    link = dashboard_link(url, "apps", "").replace("/apps/", "/apps", 1)
    click.echo(link)
    if not only_print:
        import webbrowser

        webbrowser.open(link)


def register(cli: click.Group) -> None:
    from .stores import dict_group, queue_group

    for group in (server, app, function, call, container, secret, token, volume, dict_group, queue_group, dashboard):
        cli.add_command(group)
