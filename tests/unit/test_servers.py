"""Finding this home's servers: a killed server's zombie is not a server, and a standing server that does not
answer is reported, never silently replaced by an embedded one (issue 24, items 20 and 23)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from shoal import _servers, client, exception


def test_a_killed_process_not_yet_reaped_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert _servers._alive(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # dead, and left a zombie (not reaped)
        assert not _servers._alive(child.pid)
    finally:
        child.wait()


def test_a_standing_server_that_does_not_answer_is_reported_not_replaced(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SHOAL_HOME", str(tmp_path))
    monkeypatch.delenv("SHOAL_SERVER_URL", raising=False)
    monkeypatch.setattr(client, "STANDING_PATIENCE", 0.3)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        folder = tmp_path / "servers"
        folder.mkdir()
        record = {"url": url, "pid": os.getpid(), "kind": "standing", "token": None, "state_dir": str(tmp_path)}
        (folder / f"{os.getpid()}.json").write_text(json.dumps(record))
        with pytest.raises(exception.ConnectionError, match="does not answer"):
            client.configured_url()


def test_an_image_built_before_is_one_line_not_its_whole_build_log_again(capsys):  # noqa: ANN001
    import asyncio

    from shoal.app import build_image
    from shoal.protocol.messages import ImageBuildReply
    from shoal.protocol.specs import ImageSpec

    class Built:
        """A server whose image is ready already, with a long build log from when it was built."""

        async def call(self, *args: object) -> ImageBuildReply:
            return ImageBuildReply("ready", [f"step {i}" for i in range(50)])

    asyncio.run(build_image(Built(), ImageSpec("abcdef0123456789")))  # type: ignore[arg-type]
    assert capsys.readouterr().err == "  [image] abcdef012345 ready (built before)\n"


def test_a_labels_port_is_remembered_in_the_home_for_the_next_embedded_server(tmp_path, monkeypatch):  # noqa: ANN001
    from shoal.server.gateway import remember_port, remembered_port

    monkeypatch.setenv("SHOAL_HOME", str(tmp_path))
    assert remembered_port("site") is None
    remember_port("site", 43210)
    remember_port("other", 43211)
    assert (remembered_port("site"), remembered_port("other")) == (43210, 43211)
    (tmp_path / "endpoint_ports.json").write_text("not json")
    assert remembered_port("site") is None  # a damaged file costs a new URL, nothing else


def test_a_ctrl_c_that_breaks_a_conditions_lock_is_still_a_keyboard_interrupt(monkeypatch):  # noqa: ANN001
    from shoal import _sync

    class Broken:
        """A future whose wait was cut by Ctrl-C after its Condition released its lock (a CPython race)."""

        cancelled = False

        def result(self) -> None:
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                raise RuntimeError("cannot release un-acquired lock")  # noqa: B904 - as CPython raises it

        def cancel(self) -> None:
            self.cancelled = True

    broken = Broken()

    async def nothing() -> None:
        return None

    monkeypatch.setattr(_sync, "_submit", lambda coro: (coro.close(), broken)[1])
    with pytest.raises(KeyboardInterrupt):
        _sync.run_sync(nothing())
    assert broken.cancelled
