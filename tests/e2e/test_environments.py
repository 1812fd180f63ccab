"""Container environments: images built once and cached, volumes shared by containers, a private /tmp."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import pytest

import shoal
from shoal.exception import ImageBuildError, InvalidError
from tests.apps import environments
from tests.conftest import REPO


def test_an_image_package_is_importable_in_the_container_only_and_the_build_is_cached(server, sandbox, capfd):  # noqa: ANN001
    # the app also mounts a volume: without bubblewrap this skips, saying what to install (fails in CI)
    with pytest.raises(ImportError):
        import pyjokes  # noqa: F401 - the client environment does not have it
    timings, printed = [], []
    for _ in range(2):
        started = time.monotonic()
        with environments.app.run(show_logs=False):
            info = environments.uses_image_package.remote()
        timings.append(time.monotonic() - started)
        printed.append(capfd.readouterr().err)
    # the second run prints no build log again (tests/unit/test_servers.py checks the one line it says instead)
    assert printed[1].count("[image]") <= 1, printed[1]
    assert info["version"] == "0.8.3"
    assert info["greeting"] == "hello from the image"
    assert info["python"] != sys.executable  # the image's own environment
    assert info["client_only"] == []  # nothing of the client's environment leaks in (issue 11, item 8)...
    assert os.path.realpath(info["shoal"]) == os.path.realpath(shoal.__file__)  # ...but this very Shoal does
    print(f"image build + first run: {timings[0]:.1f}s, cached run: {timings[1]:.1f}s")
    assert timings[1] < timings[0]


def test_a_bad_package_name_fails_with_image_build_error_naming_it(server):
    app = shoal.App("bad-image")
    bad = shoal.Image.debian_slim().pip_install("shoal-no-such-package-3f9a")

    @app.function(image=bad, serialized=True)
    def f() -> None:
        return None

    with pytest.raises(ImageBuildError, match="shoal-no-such-package-3f9a"):
        with app.run(show_logs=False):
            pass


def test_what_the_host_cannot_provide_is_refused_at_run_time(server):
    for image, message in [
        (shoal.Image.debian_slim(python_version="2.7"), "Python 2.7"),
        (shoal.Image.debian_slim().apt_install("shoal-not-a-debian-package"), "shoal-not-a-debian-package"),
        (shoal.Image.from_registry("nvidia/cuda:12.0-base"), "cannot run on the local backend"),
        (shoal.Image.from_dockerfile("Dockerfile"), "local backend"),
    ]:
        app = shoal.App("host-checks")
        app.function(image=image, serialized=True)(lambda: None)
        with pytest.raises(ImageBuildError, match=message):
            with app.run(show_logs=False):
                pass


def test_a_detached_style_fan_out_writes_300_files_into_a_volume(server, sandbox):
    with environments.app.run(show_logs=False):
        call = environments.embed.spawn_map(range(300))
        writers = set(call.iter())
        content, reader = environments.read_back.remote(299)
    assert content == "embedding 299"
    assert reader not in writers  # another container sees the committed write
    listing = subprocess.run([sys.executable, "-m", "shoal", "volume", "ls", "tests-results"], capture_output=True,
                             text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    assert len([line for line in listing.stdout.splitlines() if line.endswith(".out")]) == 300
    vol = shoal.Volume.from_name("tests-results")
    assert b"".join(vol.read_file("/7.out")) == b"embedding 7"
    assert len(vol.listdir("/")) == 300


def test_volume_methods(server, tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.txt").write_text("A")
    (tmp_path / "b.txt").write_text("B")
    with shoal.Volume.ephemeral() as vol:
        with vol.batch_upload() as batch:
            batch.put_directory(tmp_path / "dir", "/inputs")
            batch.put_file(tmp_path / "b.txt", "/b.txt")
        with pytest.raises(InvalidError, match="exists"):
            with vol.batch_upload() as batch:
                batch.put_file(tmp_path / "b.txt", "/b.txt")
        assert sorted(e.path for e in vol.listdir("/", recursive=True)) == ["b.txt", "inputs", "inputs/a.txt"]
        vol.copy_files(["/b.txt"], "/inputs/")
        assert b"".join(vol.read_file("/inputs/b.txt")) == b"B"
        vol.remove_file("/inputs", recursive=True)
        assert [e.path for e in vol.listdir("/")] == ["b.txt"]
        with pytest.raises(InvalidError, match="leaves the volume"):
            vol.listdir("/../../etc")


def test_containers_get_a_private_tmp(server, sandbox):
    host_file = tempfile.mktemp(prefix="host-only-")
    open(host_file, "w").close()
    try:
        with environments.app.run(show_logs=False):
            info = environments.look_at_tmp.remote(host_file)
        assert info["sees_host_file"] is False
        assert "written-inside" in info["tmp"] and os.path.basename(host_file) not in info["tmp"]
        assert not os.path.exists("/tmp/written-inside")
    finally:
        os.unlink(host_file)


def test_an_image_runs_on_another_python_found_on_the_machine(server, sandbox):
    from shoal._image_build import find_python

    if find_python("3.12") is None:  # this project's machines have pyenv's 3.12; a bare machine may not
        pytest.skip("no Python 3.12 on this machine (uv, pyenv or PATH)")
    with environments.other_python.run(show_logs=False):
        assert environments.python_version.remote() == "3.12"


def test_a_python_version_the_machine_lacks_says_what_to_install(server):
    app = shoal.App("missing-python")
    app.function(image=shoal.Image.debian_slim(python_version="3.99"), serialized=True)(lambda: None)
    with pytest.raises(ImageBuildError, match="pyenv install 3.99"):
        with app.run(show_logs=False):
            pass


def test_image_build_steps_run_on_the_server_sandboxed_seeing_nothing_of_its_state(server, sandbox):
    # Given an image whose build steps look around (a shell command) and leave a mark (a function)
    home = os.environ["SHOAL_HOME"]
    image = (
        shoal.Image.debian_slim()
        .run_commands(f"ls -A {home} > $VIRTUAL_ENV/home.txt; env > $VIRTUAL_ENV/env.txt")
        .run_function(lambda: open(sys.prefix + "/marker.txt", "w").write(sys.prefix))
    )
    app = shoal.App("build-probe")

    @app.function(image=image, serialized=True)
    def read() -> dict[str, str]:
        return {name: open(f"{sys.prefix}/{name}").read() for name in ("home.txt", "env.txt", "marker.txt")}

    # When a container of it runs, the build's traces are in its environment
    with app.run(show_logs=False):
        seen = read.remote()
    # Then the steps ran in the image (run_function too, on the server: its pickle loaded in the image only),
    # the server's home showed nothing but the image being built, and no Shoal setting (no token) reached them
    assert seen["marker.txt"].startswith(home)
    assert seen["home.txt"].split() == ["images"]
    assert not [line for line in seen["env.txt"].splitlines() if line.startswith("SHOAL_")]
