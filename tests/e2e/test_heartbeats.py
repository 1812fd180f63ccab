"""Heartbeats folded into exchanges: a container that exchanges often sends no separate beat, and orders (inputs to
interrupt) still reach it at once, in the reply of the exchange it holds open or of a held beat."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import httpx

from tests.apps import beats as beats_app
from tests.conftest import ServerProcess, run_script, shared_dir

APP = textwrap.dedent("""
    import time

    import shoal

    app = shoal.App("beats")


    @app.function(max_containers=2)
    def quick(x: int) -> int:
        time.sleep(0.02)
        return x


    if __name__ == "__main__":
        with app.run(show_logs=False):
            assert list(quick.map(range(300))) == list(range(300))
""")


LONG = textwrap.dedent("""
    import time

    import shoal

    app = shoal.App("long-inputs")


    @app.function()
    def slow(x: int) -> int:
        time.sleep(3)
        return x


    if __name__ == "__main__":
        with app.run(show_logs=False):
            for x in range(2):
                started = time.monotonic()
                assert slow.remote(x) == x
                print(f"took {time.monotonic() - started:.2f}", flush=True)
""")


def beats(srv: ServerProcess, field: str = "heartbeats") -> int:
    return int(httpx.get(f"{srv.url}/server", headers=srv.auth, timeout=30).json()[field])


def test_a_fleet_that_exchanges_sends_no_separate_beats(tmp_path: Path):
    # Given a server whose containers would beat 5 times a second (SHOAL_HEARTBEAT_INTERVAL=0.2)
    srv = ServerProcess(tmp_path / "state", env={"SHOAL_HEARTBEAT_INTERVAL": "0.2"})
    try:
        (tmp_path / "app.py").write_text(APP)
        # When two containers run a map of 300 inputs of 20 ms (about 3 s of exchanges, one after another)
        before = beats(srv)
        done = run_script([str(tmp_path / "app.py")], env={"SHOAL_SERVER_URL": srv.url})
        assert done.returncode == 0, done.stderr
        # Then they sent about one beat each (held by the server while they exchanged), not 5 a second
        assert beats(srv) - before <= 6, f"{beats(srv) - before} heartbeats during the map"
    finally:
        srv.stop()


def test_an_order_to_interrupt_reaches_a_container_holding_an_exchange_open_at_once(server):
    # Given a long input running in a @concurrent container, which long-polls for more inputs meanwhile
    marker = Path(shared_dir())
    with beats_app.app.run(show_logs=False):
        call = beats_app.interruptible.spawn(str(marker))
        deadline = time.monotonic() + 60
        while not (marker / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (marker / "started").exists()
        # When its call is cancelled
        started = time.monotonic()
        call.cancel()
        while not (marker / "stopped").exists() and time.monotonic() - started < 30:
            time.sleep(0.02)
        # Then the input is interrupted within a second or so (the order rode the reply of the held exchange)
        took = time.monotonic() - started
        assert (marker / "stopped").exists() and took < 3, f"interrupted after {took:.1f}s"


def test_a_long_input_s_result_goes_behind_its_held_beat_which_answers_at_once(tmp_path: Path):
    """A container busy with a 3 s input holds a quiet beat (here up to 10 s: a third of a 30 s timeout); its
    exchange, on the same connection (pipelined), releases the beat: the result is not held until the beat ends."""
    srv = ServerProcess(tmp_path / "state", env={"SHOAL_HEARTBEAT_TIMEOUT": "30"})
    try:
        (tmp_path / "app.py").write_text(LONG)
        before = beats(srv, "beats_released")
        done = run_script([str(tmp_path / "app.py")], env={"SHOAL_SERVER_URL": srv.url})
        assert done.returncode == 0, done.stderr
        took = [float(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("took ")]
        assert len(took) == 2
        assert took[1] < 3 + 4, f"a 3 s input's result came after {took[1]:.1f}s (held behind its beat: ~10 s)"
        assert beats(srv, "beats_released") - before >= 1  # an exchange released the beat it followed
    finally:
        srv.stop()
