"""Commands the server orders a container to run (``shoal container exec``).

A command is a child of the container process: it runs in the container's sandbox (its private ``/tmp``, its
mounts and memory limit), with its environment (secrets included) and working directory, and in its process
group, so stopping the container stops the command too. It gets no terminal and no input; its output is
collected and sent back whole when it ends (each stream cut to its last ``COMMAND_OUTPUT_LIMIT`` bytes).
"""

from __future__ import annotations

import subprocess

from ..protocol.messages import COMMAND_OUTPUT_LIMIT, Command, CommandResult

READ_AFTER_KILL = 2.0  # seconds to collect what a command killed for its timeout wrote (a child may hold its pipes)


def run(command: Command) -> CommandResult:
    """Run ``command`` to its end or its timeout."""
    try:
        proc = subprocess.Popen(command.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        return _refused(command, 127, f"{command.argv[0]}: command not found in the container")
    except PermissionError:
        return _refused(command, 126, f"{command.argv[0]}: permission denied in the container")
    except OSError as exc:
        return _refused(command, 126, f"{command.argv[0]}: cannot run it in the container: {exc.strerror or exc}")
    try:
        out, err = proc.communicate(timeout=command.timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = _collect(proc)
        why = f"killed after its timeout of {command.timeout:g}s"
        return CommandResult(command.exec_id, None, _tail(out), _tail(err), why)
    return CommandResult(command.exec_id, proc.returncode, _tail(out), _tail(err))


def _collect(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    try:
        return proc.communicate(timeout=READ_AFTER_KILL)
    except subprocess.TimeoutExpired as exc:  # a child of the command still holds its pipes
        return _bytes(exc.output), _bytes(exc.stderr)


def _bytes(data: bytes | str | None) -> bytes:
    return data.encode() if isinstance(data, str) else data or b""


def _tail(data: bytes) -> bytes:
    return data[-COMMAND_OUTPUT_LIMIT:]


def _refused(command: Command, code: int, text: str) -> CommandResult:
    return CommandResult(command.exec_id, code, stderr=(text + "\n").encode(), error=text)
