"""Modal programs run unchanged (issue 12, part 1): `import modal` means Shoal under `shoal run`/`python`."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

PROGRAMS = REPO / "tests" / "modal_programs"


def shoal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args], cwd=REPO, capture_output=True, text=True, timeout=180,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def test_modal_script_mode_runs_unchanged_with_shoal_python(server):
    result = shoal("python", str(PROGRAMS / "script_mode.py"), "5")
    assert result.returncode == 0, result.stderr
    assert "SQUARES [0, 1, 4, 9, 16]" in result.stdout


def test_a_modal_program_runs_unchanged_with_shoal_run(server):
    result = shoal("run", str(PROGRAMS / "etl.py"))
    assert result.returncode == 0, result.stderr
    for expected in ["ALIAS shoal.app", "SPAWNED 10", "CLS 3", "DICT v", "NOTFOUND NotFoundError", "PARTIAL True"]:
        assert expected in result.stdout, (expected, result.stdout, result.stderr)


def test_an_unsupported_modal_api_fails_where_it_is_used_with_a_clear_message(server):
    result = shoal("run", str(PROGRAMS / "unsupported.py"))
    assert result.returncode == 1
    assert "BEFORE" in result.stdout
    assert "Modal's modal.Sandbox is not supported by Shoal yet" in result.stderr


def test_modal_is_never_shadowed_outside_shoal_commands():
    import shoal as _  # noqa: F401 - importing Shoal installs nothing

    if importlib.util.find_spec("modal") is not None and "modal" not in sys.modules:
        pytest.skip("a real modal package is installed here")
    assert "modal" not in sys.modules
    with pytest.raises(ModuleNotFoundError):
        import modal  # noqa: F401


def test_a_deployed_modal_program_is_callable_by_name(server):
    import shoal as sdk

    deployed = shoal("deploy", str(PROGRAMS / "etl.py"))
    assert deployed.returncode == 0, deployed.stderr
    transform = sdk.Function.from_name("modal-etl", "transform")
    assert transform.remote({"id": 1, "value": 4}) == {"id": 1, "value": 40, "alias": "shoal.app"}
    listed = shoal("app", "list")
    assert "nightly: Cron('0 6 * * *', 'America/New_York')" in listed.stdout
    shoal("app", "stop", "modal-etl")


def test_async_entrypoints_batched_methods_and_app_image_work_as_in_modal(server):
    result = shoal("run", str(PROGRAMS / "gaps.py"))
    assert result.returncode == 0, result.stderr
    assert "ASYNC HELLO BATCHED [1, 2, 3] GEN [3, 2, 1]" in result.stdout
    assert "never awaited" not in result.stderr


def test_modals_core_features_run_unchanged(server, sandbox):
    result = shoal("run", str(PROGRAMS / "features.py"))
    assert result.returncode == 0, result.stderr
    for expected in ["STARMAP ['hi ann!', 'hi bob?']", "CONCURRENT [0, 1, 2, 3]", "FOREACH [0, 1, 2]",
                     "SPAWNMAP hi cy.", "TIMEOUT ok"]:  # fmt: skip
        assert expected in result.stdout, (expected, result.stdout, result.stderr)
    assert "ann.txt" in result.stdout and "bob.txt" in result.stdout


def test_a_modal_program_runs_on_a_standing_server_started_without_any_special_environment():
    import tempfile
    from pathlib import Path

    home = Path(tempfile.mkdtemp(prefix="shoal-modal-home-"))
    plain = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}  # nothing of the test set-up
    plain.update(SHOAL_HOME=str(home))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "shoal", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=180, env={**plain, "PYTHONPATH": str(REPO)})  # fmt: skip

    started = subprocess.run([sys.executable, "-m", "shoal", "server", "start"], cwd="/", capture_output=True,
                             text=True, timeout=60, env=plain)  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        result = run("run", str(PROGRAMS / "etl.py"), "--rows", "5")
        assert result.returncode == 0, result.stderr
        assert "ALIAS shoal.app" in result.stdout and result.stderr.startswith("✓ Using the standing server")
    finally:
        run("server", "stop")


def test_a_modal_poll_page_and_streamed_generator_and_map_answers_work_unchanged(server):
    # Given Modal's web job-queue shapes, deployed unchanged (issue 25, items 13 and 14)
    import httpx

    import shoal as sdk

    deployed = shoal("deploy", str(PROGRAMS / "poll_page.py"))
    assert deployed.returncode == 0, deployed.stderr
    url = sdk.Function.from_name("modal-poll-page", "fastapi_app").get_web_url()
    assert url
    with httpx.Client(base_url=url, timeout=60) as web:
        # When /factors spawns and redirects, Then /result polls with get(timeout=0): "not ready", then the result
        started = web.get("/factors", params={"n": 12})
        assert started.status_code == 302 and started.headers["location"].startswith("/result?function_id=fc-")
        answers = []
        deadline = time.monotonic() + 60
        while not answers or answers[-1] != {"factors": [1, 2, 3, 4, 6, 12]}:
            assert time.monotonic() < deadline, answers
            answer = web.get(started.headers["location"])
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())
            time.sleep(0.1)  # a browser's poll, not a busy loop
        assert answers[0] == {"status": "not ready"}
        assert web.get(started.headers["location"]).json() == {"factors": [1, 2, 3, 4, 6, 12]}  # and again
        # and StreamingResponse over a remote_gen() and over a map() streams every item
        assert web.get("/generated", params={"n": 3}).text == "item 0\nitem 1\nitem 2\n"
        assert web.get("/mapped", params={"n": 4}).text == "0\n1\n4\n9\n"


def test_a_packaged_web_app_with_a_local_file_serves_and_keeps_its_url_across_shoal_serve_runs(tmp_path, sandbox):  # noqa: ANN001
    # Given Modal's packaged-app shape (issue 25, item 15), served with `shoal serve -m` on an embedded server
    import re
    import signal

    import httpx

    env = {**os.environ, "PYTHONPATH": str(REPO), "SHOAL_HOME": str(tmp_path / "home"), "SHOAL_SERVER_URL": ""}
    urls = []
    for _ in range(2):  # When it is served, stopped with Ctrl-C, and served again
        proc = subprocess.Popen([sys.executable, "-m", "shoal", "serve", "-m", "tests.modal_programs.site_pkg.site"],
                                cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        try:
            assert proc.stdout is not None
            seen = ""
            while "Serving" not in seen:
                line = proc.stdout.readline()
                assert line, seen
                seen += line
            urls.append(re.findall(r"=> (http://\S+)", seen)[0])
            # Then it answers from its file and its relative import (its containers start: they used to fail)
            assert httpx.get(urls[-1] + "/", timeout=60).text == "hello site / static content"
            os.killpg(proc.pid, signal.SIGINT)
            assert proc.wait(30) == 130
        finally:
            proc.kill()
            proc.communicate()
    assert urls[0] == urls[1]  # and its URL is the same on the next run, as Modal keeps a label's URL
