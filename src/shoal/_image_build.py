"""Materialising an ``Image`` for the local backend: a cached virtualenv per content hash.

The virtualenv is made from the *base* interpreter (never the client's virtualenv, pyenv shims or user site),
without system site-packages: an image sees the standard library, what it installs, and Shoal's container
runtime (Shoal, cloudpickle, msgpack and msgspec, linked from this installation through a ``.pth`` file, after the
image's own site-packages so that its packages win). Nothing else of the client's environment leaks in.
uv is used when installed, else venv + pip. What the host cannot provide (a different Python, missing Debian
packages, a Dockerfile) is an ``ImageBuildError`` at run/deploy time, never a silently different environment.
"""

from __future__ import annotations

import fcntl
import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backends import sandbox
from .config import settings
from .exception import ImageBuildError
from .protocol.specs import ImageSpec, PreparedImage

HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# What a container imports besides the user's code. A web function's image brings its own server (uvicorn: as
# Modal asks for, pip_install("fastapi[standard]")), so nothing else of this environment shows in images.
RUNTIME_PACKAGES = ("shoal", "cloudpickle", "msgpack", "msgspec")
BUILT_MARKER = ".shoal-built-4"  # bumped when the layout changes: older builds are rebuilt


def materialise(image: ImageSpec, log: Callable[[str], None], fetch: Callable[[str], bytes]) -> PreparedImage:
    """Check the image against this machine and build its environment once (reused while the spec is unchanged).

    ``fetch`` returns a blob (the pickled ``run_function`` callables); build commands run in the sandbox when
    bubblewrap is here, seeing nothing of Shoal's state, with a clean environment.
    """
    env: dict[str, str] = {}
    workdir: str | None = None
    pythonpath: list[str] = []
    interpreter = base_python()
    for name, value in image.steps:
        if name == "base":
            interpreter = _interpreter(value.get("python"), "Image.debian_slim")
        elif name == "registry":
            interpreter = _check_registry(value["tag"], value.get("add_python"))
        elif name == "dockerfile":
            raise ImageBuildError(
                f"Image.from_dockerfile({value!r}) cannot be built by the local backend (it has no container "
                "runtime). Express it as Image.debian_slim().pip_install(...).run_commands(...)."
            )
        elif name == "apt":
            _check_apt(value)
        elif name == "env":
            env.update(value)
        elif name == "workdir":
            workdir = value
        elif name == "pythonpath":
            pythonpath.extend(value)
    other_python = interpreter != base_python()
    python = _build(image, log, interpreter, fetch) if image.needs_build or other_python else None
    env["SHOAL_IMAGE_HASH"] = image.hash
    return PreparedImage(python, image.hash, env, workdir, pythonpath, image.mounts)


def _interpreter(version: str | None, what: str) -> str:
    """The interpreter for ``python_version``: this one's base when it matches, else one found on the machine
    (uv's discovery, pyenv's versions, PATH); never downloaded at run time."""
    if not version or version == HOST_PYTHON:
        return base_python()
    if not re.fullmatch(r"3\.\d+", version) or int(version.split(".")[1]) < 10:
        raise ImageBuildError(
            f"{what}(python_version={version!r}): Shoal's containers need Python 3.10 or newer, not Python {version}."
        )
    found = find_python(version)
    if found is None:
        raise ImageBuildError(
            f"{what}(python_version={version!r}) needs Python {version}, and this machine has none (looked with uv, "
            f"in pyenv's versions and on PATH). Install it (`pyenv install {version}`, `uv python install {version}` "
            f"or `apt-get install python{version}`), or drop python_version to use Python {HOST_PYTHON}."
        )
    return found


def find_python(version: str) -> str | None:
    """An executable of Python ``version`` (``"3.12"``) on this machine, checked by running it; None if none."""
    candidates: list[str] = []
    uv = shutil.which("uv")
    if uv:
        found = subprocess.run([uv, "python", "find", version], capture_output=True, text=True)
        candidates += [found.stdout.strip()] if found.returncode == 0 and found.stdout.strip() else []
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates += [str(p) for p in sorted(pyenv_root.glob(f"versions/{version}*/bin/python{version}"), reverse=True)]
    on_path = shutil.which(f"python{version}")
    if on_path and "shims" not in Path(on_path).parts:  # pyenv's shims need pyenv's own state to pick a version
        candidates.append(on_path)
    for candidate in candidates:
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


def _check_registry(tag: str, add_python: str | None) -> str:
    match = re.search(r"python:(\d+\.\d+)", tag)
    version = add_python or (match.group(1) if match else None)
    if version is None:
        raise ImageBuildError(
            f"Image.from_registry({tag!r}) cannot run on the local backend: it has no container runtime, and the "
            "image's Python version is unknown. Use a python:X.Y tag matching this machine, or Image.debian_slim()."
        )
    return _interpreter(version, f"Image.from_registry({tag!r})")


def _check_apt(packages: list[str]) -> None:
    missing = []
    for pkg in packages:
        result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if result.returncode != 0 or "install ok installed" not in result.stdout:
            missing.append(pkg)
    if missing:
        raise ImageBuildError(
            f"apt_install needs Debian packages this machine lacks: {', '.join(missing)}. The local backend does "
            f"not install system packages: run `apt-get install {' '.join(missing)}` on the host, then retry."
        )


def _build(image: ImageSpec, log: Callable[[str], None], interpreter: str, fetch: Callable[[str], bytes]) -> str:
    root = settings().home / "images"
    root.mkdir(parents=True, exist_ok=True)
    target = root / image.hash
    python = target / "bin" / "python"
    with open(root / f"{image.hash}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build per image at a time, across processes
        if (target / BUILT_MARKER).exists():
            return str(python)
        shutil.rmtree(target, ignore_errors=True)
        log(f"Building image {image.hash} ...")
        build = Build(target, root / ".cache", _readable_paths(image))
        _make_venv(build, log, interpreter)
        function_index = 0
        for number, (name, value) in enumerate(image.steps, 1):
            if name == "pip":
                build.run(_pip_command(python, value), f"step {number}: pip install {' '.join(value['packages'])}", log)
            elif name == "run":
                for command in value:
                    build.run(["bash", "-c", command], f"step {number}: {command}", log)
            elif name == "function":
                pickled = target / ".shoal-build" / f"function-{function_index}.pkl"
                pickled.parent.mkdir(exist_ok=True)
                pickled.write_bytes(fetch(image.functions[function_index]))
                code = "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))()"
                build.run([str(python), "-c", code, str(pickled)], f"step {number}: run_function({value})", log)
                function_index += 1
        shutil.rmtree(target / ".shoal-build", ignore_errors=True)
        (target / BUILT_MARKER).write_text(image.hash)
        log(f"Built image {image.hash}.")
    return str(python)


@dataclass(frozen=True)
class Build:
    """Where an image is built, and how its commands run: in the sandbox when there is one, seeing the image's
    directory and a download cache (read-write), files the steps name, and nothing of Shoal's state."""

    target: Path
    cache: Path
    readable: list[str]

    def run(self, command: list[str], what: str, log: Callable[[str], None]) -> None:
        self.cache.mkdir(exist_ok=True)
        self.target.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
        env.update(VIRTUAL_ENV=str(self.target), PATH=f"{self.target / 'bin'}:{os.environ.get('PATH', '')}",
                   PIP_CACHE_DIR=str(self.cache / "pip"), UV_CACHE_DIR=str(self.cache / "uv"))  # fmt: skip
        if sandbox.bwrap() is not None:
            owner = sandbox.user()
            if owner is not None:  # the steps run as the sandbox's user: the image and its cache are theirs
                for folder in (self.target, self.cache):
                    os.chown(folder, *owner)
            rw = [(str(self.target), str(self.target)), (str(self.cache), str(self.cache))]
            ro = [(p, p) for p in self.readable]
            command = sandbox.wrap(command, rw=rw, ro=ro, workdir=None, hidden=[str(settings().home)])
        _run(command, what, log, env)


def _readable_paths(image: ImageSpec) -> list[str]:
    """Files and folders the steps name that the sandbox would hide (under /tmp): requirements, local wheels."""
    named: list[str] = []
    for name, value in image.steps:
        if name == "pip":
            named += [*value["packages"], *(str(value.get(k) or "") for k in ("find_links", "index_url"))]
    paths = {p.removeprefix("file://") for p in named if p.startswith(("/tmp/", "file:///tmp/"))}
    return sorted(p for p in paths if Path(p).exists())


def base_python() -> str:
    """The interpreter under this one's virtualenv (itself when it is not in one)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def _make_venv(build: Build, log: Callable[[str], None], interpreter: str) -> None:
    uv = shutil.which("uv")
    if uv:
        command = [uv, "venv", "--seed", "--python", interpreter, str(build.target)]
    else:
        command = [interpreter, "-m", "venv", str(build.target)]
    build.run(command, "create the virtualenv", log)
    _link_runtime(build, log, same_python=interpreter == base_python())


def _link_runtime(build: Build, log: Callable[[str], None], same_python: bool) -> None:
    """Make Shoal's container runtime importable in the image, and nothing else of this environment.

    Pure-Python packages are linked; a compiled one (msgspec) is linked only for this Python, and installed at
    this installation's version for another one."""
    target = build.target
    runtime = target / "shoal-runtime"
    runtime.mkdir(exist_ok=True)
    for name in RUNTIME_PACKAGES:
        module = importlib.import_module(name)
        assert module.__file__ is not None
        package = Path(module.__file__).resolve().parent
        if not same_python and any(package.glob("*.so")):
            pin = {"packages": [f"{name}=={importlib.metadata.version(name)}"], "options": ""}
            build.run(_pip_command(target / "bin" / "python", pin), f"install {name} for the image's Python", log)
            continue
        (runtime / name).symlink_to(package)
    site_packages = sorted(target.glob("lib/python*/site-packages"))
    if not site_packages:
        raise ImageBuildError(f"The image's virtualenv at {target} has no site-packages directory.")
    (site_packages[0] / "_shoal_runtime.pth").write_text(f"{runtime}\n")


def _pip_command(python: Path, step: dict[str, Any]) -> list[str]:
    uv = shutil.which("uv")
    command = [uv, "pip", "install", "--python", str(python)] if uv else [
        str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
    ]  # fmt: skip
    for flag in ("index_url", "extra_index_url", "find_links"):
        if step.get(flag):
            command += [f"--{flag.replace('_', '-')}", step[flag]]
    if step.get("pre"):
        command.append("--pre")
    return [*command, *step["options"].split(), *step["packages"]]


def _run(command: list[str], what: str, log: Callable[[str], None], env: dict[str, str] | None = None) -> None:
    """Run a build step, streaming its output; raise ImageBuildError with the output's tail on failure."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        log(line.rstrip())
    code = proc.wait()
    proc.stdout.close()
    if code != 0:
        tail = "\n".join(lines[-30:])
        raise ImageBuildError(f"Image build failed at {what} (exit code {code}):\n{tail}")
