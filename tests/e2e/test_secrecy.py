"""The sandbox hides the server's state, wherever SHOAL_HOME lives (issue 11, item 10)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.apps import probes
from tests.conftest import ServerProcess


def test_no_file_of_the_server_state_is_visible_from_a_container(sandbox, monkeypatch: pytest.MonkeyPatch):
    # Given a home outside /tmp (like the default ~/.shoal), holding a server with a secret, a volume and results
    home = Path(tempfile.mkdtemp(prefix="shoal-secrecy-", dir="/var/tmp"))
    state = home / "server"
    srv = ServerProcess(state, env={"SHOAL_HOME": str(home)})
    monkeypatch.setenv("SHOAL_SERVER_URL", srv.url)
    monkeypatch.setenv("SHOAL_HOME", str(home))
    try:
        probe = probes.probe_state
        with probes.app.run(show_logs=False):
            assert probe.remote([], []) == {"readable": [], "writable": [], "listed": []}  # state exists now
            files = [str(p) for p in home.rglob("*") if p.is_file()]
            dirs = [str(p) for p in home.rglob("*") if p.is_dir()] + [str(home)]
            assert any(f.endswith("secret.key") for f in files) and any(f.endswith("state.db") for f in files)
            # When a function tries to open every file and directory under the state directory
            seen = probe.remote(files, dirs)
        # Then it can read, write and list none of them
        assert seen == {"readable": [], "writable": [], "listed": []}
        assert not list(home.rglob("planted-by-a-container"))
    finally:
        srv.stop()
        shutil.rmtree(home, ignore_errors=True)
