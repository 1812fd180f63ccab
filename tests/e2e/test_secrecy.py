"""The sandbox hides the server's state, wherever SHOAL_HOME lives (issue 11, item 10)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

import shoal
from tests.conftest import ServerProcess


def _probe(paths: list[str], dirs: list[str]) -> dict[str, list[str]]:
    """Runs in a container: which of the server's files can it read, write or list?"""
    readable, writable, listed = [], [], []
    for path in paths:
        try:
            with open(path, "rb") as f:
                f.read(1)
            readable.append(path)
        except OSError:
            pass
        try:
            with open(path, "ab"):
                writable.append(path)
        except OSError:
            pass
    for d in dirs:
        try:
            if os.listdir(d):
                listed.append(d)
        except OSError:
            pass
        try:
            with open(os.path.join(d, "planted-by-a-container"), "w"):
                writable.append(d)
        except OSError:
            pass
    return {"readable": readable, "writable": writable, "listed": listed}


def test_no_file_of_the_server_state_is_visible_from_a_container(sandbox, monkeypatch: pytest.MonkeyPatch):
    # Given a home outside /tmp (like the default ~/.shoal), holding a server with a secret, a volume and results
    home = Path(tempfile.mkdtemp(prefix="shoal-secrecy-", dir="/var/tmp"))
    state = home / "server"
    srv = ServerProcess(state, env={"SHOAL_HOME": str(home)})
    monkeypatch.setenv("SHOAL_SERVER_URL", srv.url)
    monkeypatch.setenv("SHOAL_HOME", str(home))
    try:
        app = shoal.App("secrecy")
        probe = app.function(serialized=True, secrets=[shoal.Secret.from_dict({"API_KEY": "s3cret"})])(_probe)
        with app.run(show_logs=False):
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
