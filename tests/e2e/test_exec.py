"""``shoal container exec ID -- CMD`` (issue 25, item 11) as a user types it: the command runs in the container's
sandbox and environment, its output and exit code come back, and bad input gets a clear error."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import shoal
from tests.apps import execs
from tests.e2e.test_cli import shoal_cli


def test_a_command_runs_in_the_containers_sandbox_and_environment(server, sandbox):  # noqa: ANN001
    tag = f"tag-{time.time_ns()}"
    with execs.app.run(show_logs=False):
        container_id = execs.mark.remote(tag)
        started = time.monotonic()
        seen = shoal_cli("container", "exec", container_id, "--", "cat", "/tmp/exec-mark")
        assert (seen.returncode, seen.stdout) == (0, tag), seen.stderr  # its own /tmp, the function's mark in it
        assert time.monotonic() - started < 10  # an idle container's held exchange carries the order at once
        assert not Path("/tmp/exec-mark").exists() or Path("/tmp/exec-mark").read_text() != tag  # not the host's
        env = shoal_cli("container", "exec", container_id, "--", "sh", "-c", "echo $EXEC_SECRET $SHOAL_CONTAINER_ID")
        assert env.stdout.split() == [execs.SECRET, container_id]  # its environment: secrets and all
        # options of the command are the command's; its stderr and exit code are passed on
        failed = shoal_cli("container", "exec", container_id, "--", "sh", "-c", "echo oops >&2; exit 3")
        assert (failed.returncode, failed.stdout, failed.stderr) == (3, "", "oops\n")
        listed = shoal_cli("container", "exec", container_id, "--", "ls", "-a", "/tmp")
        assert listed.returncode == 0 and "exec-mark" in listed.stdout.split()


def test_a_command_reaches_a_container_busy_with_a_long_input(server):  # noqa: ANN001
    with execs.app.run(show_logs=False), shoal.Queue.ephemeral() as queue:
        call = execs.hold.spawn(queue, 120.0)
        container_id = queue.get(timeout=60)
        started = time.monotonic()
        said = shoal_cli("container", "exec", container_id, "--", "echo", "still here")
        assert (said.returncode, said.stdout) == (0, "still here\n"), said.stderr
        assert time.monotonic() - started < 15  # its held heartbeat carries the order (the input runs 120 s)
        call.cancel()


def test_bad_commands_and_containers_get_a_clear_error(server):  # noqa: ANN001
    with execs.app.run(show_logs=False):
        container_id = execs.mark.remote("x")
        missing = shoal_cli("container", "exec", container_id, "--", "no-such-command-here")
        assert missing.returncode == 127
        assert "no-such-command-here: command not found in the container" in missing.stderr
        started = time.monotonic()
        slow = shoal_cli("container", "exec", container_id, "--timeout", "1", "--", "sleep", "60")
        assert slow.returncode == 1 and "killed after its timeout of 1s" in slow.stderr, slow.stderr
        assert time.monotonic() - started < 20
        nothing = shoal_cli("container", "exec", container_id)
        assert nothing.returncode == 2 and "Missing argument" in nothing.stderr
    unknown = shoal_cli("container", "exec", "ta-0000", "--", "true")
    assert unknown.returncode == 1 and "ta-0000" in unknown.stderr and "Traceback" not in unknown.stderr
    stopped = shoal_cli("container", "exec", container_id, "--", "true")  # the app stopped: so did its container
    assert stopped.returncode == 1 and "only in a running container" in stopped.stderr, stopped.stderr


pytestmark = pytest.mark.timeout(180)
