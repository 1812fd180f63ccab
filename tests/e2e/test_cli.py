"""The `shoal` command line, run as a subprocess exactly as a user types it."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

import shoal
from tests.conftest import REPO, shared_dir

SHOAL = [sys.executable, "-m", "shoal"]
APP = str(REPO / "tests" / "apps" / "cli_app.py")


def shoal_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SHOAL, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )  # fmt: skip


def test_version_and_help():
    assert shoal_cli("--version").stdout.strip() == f"shoal, version {shoal.__version__}"
    help_text = shoal_cli("run", "--help").stdout
    assert "--detach" in help_text and "Examples" in help_text


def test_run_passes_typed_entrypoint_options(server):
    result = shoal_cli(
        "run", f"{APP}::main", "--n", "4", "--label", "hi", "--verbose", "--when", "2026-01-02", "--mode", "slow",
        "--ratio", "0.5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ARGS n=4 label=hi verbose=True when=2026-01-02 00:00:00 mode=slow ratio=0.5 total=12" in result.stdout
    assert "doubling 3" in result.stdout  # container output streamed to the terminal


def test_run_usage_errors_exit_2(server):
    several = shoal_cli("run", APP)
    assert several.returncode == 2 and "main" in several.stderr and "fan_out" in several.stderr
    missing = shoal_cli("run", f"{APP}::main")
    assert missing.returncode == 2 and "--n" in missing.stderr
    bad_choice = shoal_cli("run", f"{APP}::main", "--n", "1", "--mode", "warp")
    assert bad_choice.returncode == 2
    assert shoal_cli("run", "no/such/file.py").returncode == 2


def test_run_a_plain_function_and_write_a_result(server, tmp_path: Path):
    result = shoal_cli("run", f"{APP}::double", "--x", "21")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("42")
    out = tmp_path / "result.txt"
    assert shoal_cli("run", f"{APP}::text", "-w", str(out)).returncode == 0
    assert out.read_text() == "written by -w"


def test_user_code_failure_exits_1_with_a_short_message(server):
    result = shoal_cli("run", f"{APP}::fails")
    assert result.returncode == 1
    assert "TypeError" in result.stderr
    assert "shoal/cli" not in result.stderr  # no internal stack trace


def start_detached(entry: str, directory: Path, marker: str) -> tuple[subprocess.Popen[str], str]:
    """``shoal run --detach APP::entry --directory D``, once it printed ``MARKER call-id``: (process, call id)."""
    proc = subprocess.Popen(
        [*SHOAL, "run", "--detach", f"{APP}::{entry}", "--directory", str(directory)], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.stdout is not None
    line = ""
    while not line.startswith(marker):
        line = proc.stdout.readline()
        assert line, f"the client exited before printing {marker}"
    return proc, line.split()[1]


def test_detached_run_survives_its_client_being_killed(server):
    tmp_path = Path(shared_dir())
    # Given a detached run that submitted a spawn_map of 500 slow inputs
    proc, call_id = start_detached("fan_out", tmp_path, "SUBMITTED")
    # When the client is killed
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    # Then every input still runs, and the results can be collected from elsewhere
    assert sorted(shoal.FunctionCall.from_id(call_id).iter()) == list(range(500))
    assert len(list(tmp_path.glob("*.done"))) == 500


def write_app(path: Path, version: str) -> None:
    path.write_text(
        textwrap.dedent(f"""
        import time
        import shoal
        app = shoal.App("deployed-app")

        @shoal_function
        def version(x: int) -> str:
            print("serving", x)
            return "{version}:" + str(x)

        @app.function(max_containers=1)
        def slow(x: int) -> int:
            time.sleep(0.5)
            return x
    """).replace("@shoal_function", "@app.function()")
    )


def test_deploy_from_name_and_call_get_across_processes(server, tmp_path: Path):
    app_file = tmp_path / "deployed_app.py"
    write_app(app_file, "v1")
    deployed = shoal_cli("deploy", str(app_file))
    assert deployed.returncode == 0, deployed.stderr
    assert "version 1" in deployed.stdout
    assert f"View deployment at {server.url}/dashboard/apps/ap-" in deployed.stdout
    # a separate plain python process uses the deployed functions
    script = (
        "import shoal\n"
        "f = shoal.Function.from_name('deployed-app', 'version')\n"
        "print(list(f.map([1, 2])))\n"
        "print(f.spawn(3).object_id)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    mapped, call_id = result.stdout.strip().splitlines()
    assert mapped == "['v1:1', 'v1:2']"
    # a third process collects the spawned call from the shell
    got = shoal_cli("call", "get", call_id)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "'v1:3'"
    status = shoal_cli("call", "status", call_id, "--json")
    assert '"status": "SUCCEEDED"' in status.stdout
    calls = shoal_cli("function", "calls", "deployed-app/version", "--json")
    assert call_id in calls.stdout
    # redeploying switches the code
    write_app(app_file, "v2")
    assert "version 2" in shoal_cli("deploy", str(app_file)).stdout
    assert shoal.Function.from_name("deployed-app", "version").remote(4) == "v2:4"
    # a version-pinned lookup runs the code of that version (Modal's from_name(version=))
    assert shoal.Function.from_name("deployed-app", "version", version=1).remote(5) == "v1:5"
    with pytest.raises(shoal.exception.NotFoundError, match="no version 9"):
        shoal.Function.from_name("deployed-app", "version", version=9).remote(5)
    history = shoal_cli("app", "history", "deployed-app", "--json")
    assert '"version": 2' in history.stdout and '"version": 1' in history.stdout


def test_from_name_of_an_unknown_function_lists_what_exists(server, tmp_path: Path):
    app_file = tmp_path / "deployed_app.py"
    write_app(app_file, "v1")
    assert shoal_cli("deploy", str(app_file)).returncode == 0
    with pytest.raises(shoal.exception.NotFoundError, match="it has: slow, version"):
        shoal.Function.from_name("deployed-app", "nope").remote(1)
    with pytest.raises(shoal.exception.NotFoundError, match="no app 'no-such-app'"):
        shoal.Function.from_name("no-such-app", "f").remote(1)


def test_app_stop_stops_containers_and_fails_pending_inputs(server, tmp_path: Path):
    app_file = tmp_path / "deployed_app.py"
    write_app(app_file, "v1")
    assert shoal_cli("deploy", str(app_file), "--name", "to-stop").returncode == 0
    call = shoal.Function.from_name("to-stop", "slow").spawn_map(range(20))
    assert call.get(index=0, timeout=60) == 0
    stopped = shoal_cli("app", "stop", "to-stop")
    assert stopped.returncode == 0, stopped.stderr
    with pytest.raises(shoal.exception.InputCancellation, match="app was stopped"):
        call.get(index=19, timeout=10)
    listing = shoal_cli("container", "list", "--json")
    assert '"to-stop"' not in listing.stdout


def test_app_logs_follow_prints_new_output(server, tmp_path: Path):
    app_file = tmp_path / "deployed_app.py"
    write_app(app_file, "v1")
    assert shoal_cli("deploy", str(app_file), "--name", "logged").returncode == 0
    follower = subprocess.Popen([*SHOAL, "app", "logs", "logged", "-f"], stdout=subprocess.PIPE, text=True)
    try:
        assert shoal.Function.from_name("logged", "version").remote(77) == "v1:77"
        assert follower.stdout is not None
        while "serving 77" not in (line := follower.stdout.readline()):
            assert line, "logs -f exited early"
        assert shoal_cli("app", "stop", "logged").returncode == 0
        assert follower.wait(timeout=30) == 0  # follow ends when the app stops
    finally:
        follower.kill()
        follower.wait()
        if follower.stdout:
            follower.stdout.close()


def test_progress_bar_shows_in_a_terminal(server):
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [*SHOAL, "run", f"{APP}::main", "--n", "50"], cwd=REPO, stdin=terminal, stdout=terminal, stderr=terminal,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120", "TERM": "xterm"},
    )  # fmt: skip
    os.close(terminal)
    captured = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            captured += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(controller)
    text = captured.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "double.map" in text
    assert "50/50" in text


def test_run_a_class_method_target(server):
    result = shoal_cli("run", f"{APP}::Greeter.greet", "--name", "ada", "--times", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("hello ada! hello ada!")


def test_deployed_class_from_name_in_another_process(server):
    deployed = shoal_cli("deploy", APP, "--name", "greeter-app")
    assert deployed.returncode == 0, deployed.stderr
    script = (
        "import shoal\n"
        "Greeter = shoal.Cls.from_name('greeter-app', 'Greeter')\n"
        "print(Greeter().greet.remote('bob'), '|', Greeter(greeting='hi').greet.remote('eve'))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello bob! | hi eve!"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_a_detached_run_leaves_its_map_running(server, sig):  # noqa: ANN001
    tmp_path = Path(shared_dir())
    # Given a detached run in the middle of a 400-input map
    proc, call_id = start_detached("map_and_wait", tmp_path, "MAPPING")
    # When it gets Ctrl-C (or SIGTERM)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    # Then only the client stops, saying so in one line; every input still runs to a result
    assert proc.returncode == 130, stderr
    assert "goes on" in stderr and "shoal app logs" in stderr, stderr
    assert "Traceback" not in stderr
    assert list(shoal.FunctionCall.from_id(call_id).iter()) == list(range(400))
    assert len(list(tmp_path.glob("*.done"))) == 400


def test_ctrl_c_of_a_map_under_shoal_run_exits_130_without_a_traceback(server):
    tmp_path = Path(shared_dir())
    proc = subprocess.Popen(
        [*SHOAL, "run", f"{APP}::map_and_wait", "--directory", str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.stdout is not None
    while not proc.stdout.readline().startswith("MAPPING"):
        assert proc.poll() is None, "the client exited before its map began"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "never retrieved" not in stderr and "Traceback" not in stderr, stderr


def test_call_list_and_status_show_a_batchs_history_with_its_failures_grouped(server):
    ran = shoal_cli("run", f"{APP}::audit")
    assert ran.returncode == 0, ran.stderr
    call_id, failed = re.search(r"AUDITED (fc-\S+) (\d+)", ran.stdout).groups()
    assert failed == "5"
    # (by the app's id: a detached cli-app of another test may still run, and a name means the running one first)
    app_id = json.loads(shoal_cli("call", "status", call_id, "--json").stdout)["app_id"]
    listed = shoal_cli("call", "list", f"{app_id}/check")
    assert listed.returncode == 0 and call_id in listed.stdout, listed.stderr
    assert call_id in shoal_cli("call", "list", app_id).stdout  # the app's calls, every function's
    status = shoal_cli("call", "status", call_id)
    assert status.returncode == 0, status.stderr
    assert "FINISHED_WITH_FAILURES" in status.stdout  # the batch finished: 45 results and 5 failures returned
    assert "ended without success: 5 FAILURE" in status.stdout
    # five messages that differ only in the record's number: one group, with its first inputs
    assert "5 x ValueError: record <n> has a negative amount  (first inputs: 3, 13, 23, 33, 43)" in status.stdout
    assert f"shoal call retry {call_id}" in status.stdout  # and how to run them again once fixed
    # its traceback names the app's file where the user has it, not the unpacked bundle's copy
    as_json = json.loads(shoal_cli("call", "status", call_id, "--json").stdout)
    traceback = as_json["failures"]["groups"][0]["traceback"]
    assert f'File "{APP}"' in traceback and "/bundles/" not in traceback, traceback
    # the containers that ran it say how many inputs each served, beside how many it runs now
    rows = json.loads(shoal_cli("container", "list", "--all", "--json").stdout)
    assert sum(r["served"] for r in rows if r["function"] == "check") >= 50
    header = shoal_cli("container", "list", "--all").stdout
    assert "running" in header and "served" in header


def test_interrupting_a_detached_run_while_it_submits_says_how_many_inputs_go_on(server):
    tmp_path = Path(shared_dir())
    proc, call_id = start_detached("map_while_submitting", tmp_path, "MAPPING")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    said = re.search(r"✓ ([\d,]+) inputs of touch\.map were submitted and go on without this process; the rest "
                     r"of its inputs were never submitted", stderr)  # fmt: skip
    assert said, stderr
    submitted = int(said.group(1).replace(",", ""))
    call = shoal.FunctionCall.from_id(call_id)
    results = list(call.iter())  # the call was closed where submission stopped: it ends
    assert results == list(range(len(results))) and len(results) >= submitted >= 50


def test_every_line_of_container_output_reaches_the_terminal_in_order(server):
    # Given 4 inputs on up to 4 containers, printing 25,000 lines each (100,000 lines)
    result = shoal_cli("run", "-q", f"{APP}::many_lines")
    assert result.returncode == 0, result.stderr[-2000:]
    # Then the terminal got every line, in order for each input (each runs in one container)
    seen: dict[int, list[int]] = {k: [] for k in range(4)}
    for line in result.stdout.splitlines():
        match = re.search(r"input (\d+) line (\d+)$", line)
        if match:
            seen[int(match.group(1))].append(int(match.group(2)))
    for k, numbers in seen.items():
        assert numbers == list(range(25_000)), (k, len(numbers))
    assert "TOTAL 100000" in result.stdout


def test_app_logs_shows_the_whole_log_and_says_when_it_shows_a_tail(server):
    result = shoal_cli("run", "-q", f"{APP}::many_lines", "--inputs", "1", "--lines", "1500")
    assert result.returncode == 0, result.stderr[-2000:]
    app_id = re.search(r"\((ap-[0-9a-f]+)\)", result.stderr).group(1)
    everything = shoal_cli("app", "logs", app_id)
    assert [f"input 0 line {i}" for i in range(1500)] == [
        line for line in everything.stdout.splitlines() if line.startswith("input 0 line")
    ]
    tail = shoal_cli("app", "logs", app_id, "--tail", "100")
    assert len([line for line in tail.stdout.splitlines() if line.startswith("input 0 line")]) <= 100
    assert "earlier ones not shown" in tail.stderr


def test_small_cli_edges_give_one_clear_line(server, tmp_path: Path):
    # a missing module: one line, exit 2
    missing = shoal_cli("run", "-m", "no_such_pkg.module")
    assert missing.returncode == 2 and "No module named 'no_such_pkg.module'" in missing.stderr
    assert "Traceback" not in missing.stderr
    # a syntax error in the app: the user's file, line and code, no stack of Shoal's or importlib's; exit 1
    broken = tmp_path / "broken_syntax.py"
    broken.write_text("import shoal\napp = shoal.App('b')\n\n@app.function()\ndef f(x):\n    return x +\n")
    bad = shoal_cli("run", str(broken))
    assert bad.returncode == 1, bad.stderr
    assert f"invalid syntax in {broken}, line 6:" in bad.stderr and "return x +" in bad.stderr
    assert "Traceback" not in bad.stderr and "importlib" not in bad.stderr
    # an unknown @app.function option: what was meant, and exit 2 (a usage error)
    typo = tmp_path / "typo_option.py"
    typo.write_text("import shoal\napp = shoal.App('t')\n\n@app.function(retires=3)\ndef f(x):\n    return x\n")
    mistyped = shoal_cli("run", str(typo))
    assert mistyped.returncode == 2 and "unknown parameter 'retires'. Did you mean 'retries'?" in mistyped.stderr
    # a placement-only Modal option: one warning, on the user's own line
    placed = tmp_path / "placement.py"
    placed.write_text("import shoal\napp = shoal.App('p')\n\n@app.function(region='us-east')\ndef f(x: int) -> int:\n"
                      "    return x\n")  # fmt: skip
    warned = shoal_cli("run", f"{placed}::f", "--x", "1")
    assert f"{placed}:4: UserWarning: region='us-east' has no effect" in warned.stderr, warned.stderr
    assert warned.stderr.count("has no effect") == 1 and "importlib" not in warned.stderr
    # a serialized=True function that cannot be pickled: which one, why, and what to do; no traceback
    unpicklable = tmp_path / "unpicklable.py"
    unpicklable.write_text("import threading\nimport shoal\napp = shoal.App('u')\nlock = threading.Lock()\n\n"
                           "@app.function(serialized=True)\ndef held(x: int) -> int:\n    with lock:\n"
                           "        return x\n")  # fmt: skip
    refused = shoal_cli("run", f"{unpicklable}::held", "--x", "1")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "held (serialized=True) cannot be pickled" in refused.stderr and "inside the function" in refused.stderr
    # --help of a function with a dict parameter shows, and says how to pass it
    app_file = tmp_path / "dict_param.py"
    app_file.write_text("import shoal\napp = shoal.App('d')\n\n@app.function()\ndef f(config: dict) -> dict:\n"
                        "    return config\n")  # fmt: skip
    helped = shoal_cli("run", f"{app_file}::f", "--help")
    assert helped.returncode == 0 and "--config JSON" in helped.stdout and "JSON value" in helped.stdout
    # piped listings keep whole ids
    ran = shoal_cli("run", f"{APP}::double", "--x", "1")
    app_id = re.search(r"\((ap-[0-9a-f]+)\)", ran.stderr).group(1)
    listed = shoal_cli("app", "list")
    assert listed.returncode == 0 and app_id in listed.stdout
    assert all("…" not in line for line in listed.stdout.splitlines())


def test_the_readme_tour_app_runs_as_written(server):
    dry = shoal_cli("run", "examples/etl.py", "--day", "2026-11-01", "--dry-run")
    assert dry.returncode == 0 and "2026-11-01: would process 1000 items" in dry.stdout, dry.stderr
    one = shoal_cli("run", "examples/etl.py::process_item", "--item", '{"id": 3, "value": 5}')
    assert one.returncode == 0 and "{'id': 3, 'processed_value': 10}" in one.stdout, one.stderr


def test_ctrl_c_of_a_run_on_an_embedded_server_exits_at_once_and_takes_the_server_with_it(tmp_path: Path):
    # Given a run on an embedded server (a fresh home, no server anywhere), in its own terminal session, started
    # with SIGINT ignored as a shell starts a background job (`shoal run app.py &`)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SHOAL_HOME": str(tmp_path / "home"), "SHOAL_SERVER_URL": ""}
    ignoring = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                "os.execv(sys.executable, [sys.executable, '-m', 'shoal', *sys.argv[1:]])")  # fmt: skip
    args = ["run", f"{APP}::map_and_wait", "--directory", shared_dir(), "--count", "4000"]
    proc = subprocess.Popen([sys.executable, "-c", ignoring, *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # fmt: skip
    assert proc.stdout is not None
    while not (line := proc.stdout.readline()).startswith("MAPPING"):
        assert line, "the run exited before it mapped"
    servers = [p for p in psutil.Process(proc.pid).children() if "shoal.server" in " ".join(p.cmdline())]
    assert len(servers) == 1
    # When the terminal's Ctrl-C reaches the whole foreground process group
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.communicate()
    # Then the run stops within two seconds, and its embedded server is gone with it
    assert time.monotonic() - started < 2.0, stderr
    assert proc.returncode == 130, stderr
    assert not servers[0].is_running() or servers[0].status() == psutil.STATUS_ZOMBIE


def test_shoal_run_starts_its_server_before_it_imports_the_app_and_stops_it_when_the_import_fails(tmp_path: Path):
    # Given a fresh home (no server anywhere) and an app module that says, as it is imported, which servers its
    # process has started, and then fails
    module = tmp_path / "fails_to_import.py"
    module.write_text(textwrap.dedent("""
        import os
        import psutil
        kids = [p for p in psutil.Process(os.getpid()).children() if "shoal.server" in " ".join(p.cmdline())]
        print("SERVERS", len(kids), flush=True)
        raise RuntimeError("this module does not import")
    """))  # fmt: skip
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(REPO), "SHOAL_HOME": str(home), "SHOAL_SERVER_URL": ""}
    result = subprocess.run([*SHOAL, "run", str(module)], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env=env)  # fmt: skip
    # Then its embedded server was starting while the module was imported (the two starts run side by side)
    assert "SERVERS 1" in result.stdout, result.stderr
    assert result.returncode == 1 and "this module does not import" in result.stderr
    # And the run that never was takes its server and the server's state with it
    left = [p for p in psutil.process_iter(["cmdline"]) if str(home) in " ".join(p.info["cmdline"] or [])]
    assert left == []
    assert not any((home / "embedded").iterdir())
