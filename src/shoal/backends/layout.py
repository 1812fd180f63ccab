"""How a local container's process is laid out: its environment, its sandbox's command line, and the template of
the fork server it is forked from. :class:`~.local.LocalBackend` runs what this describes.

It needs no event loop and imports none of the backend's running parts: a server's start lays out its spare fork
server with it and launches that first thing (:func:`~.fork_launch.launch_early`), before its own slow imports.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from ..config import settings
from ..protocol.specs import PreparedImage
from . import sandbox
from .base import ContainerSpec, VolumeDirs
from .fork_launch import Template

PRIVATE_HOME = "/tmp/.shoal"  # a sandboxed container's $SHOAL_HOME: in its private /tmp
# What a container keeps of the server's environment: the interpreter's and the locale's settings, Shoal's own
# (never the client token) and the GPU runtime's. Everything else comes from the function's spec and image.
KEPT_VARIABLES = {"PATH", "PYTHONPATH", "LANG", "LANGUAGE", "TZ", "TERM"}
KEPT_PREFIXES = ("LC_", "SHOAL_", "CUDA_", "NVIDIA_")
# What a fork server starts with (Python reads these when it starts: they are its containers' too); the rest of a
# container's environment reaches the container only (fork_server.py)
TEMPLATE_VARIABLES = {"PATH", "PYTHONPATH", "LANG", "LANGUAGE", "TZ", "HOME", "SHOAL_HOME"}
TEMPLATE_PREFIXES = ("LC_", "PYTHON")
FORK_SERVER_TMP_MIB = 64  # the fork server's own /tmp: each container it forks has its own
SERVER_ONLY = {"SHOAL_TOKEN", "SHOAL_SANDBOX_BINDS", "SHOAL_MOUNT_ROOTS", "SHOAL_STORE", "SHOAL_SHARED_DIR"}
SPARE = ContainerSpec("", "", "", "", "")  # the commonest layout (no image, no volume), before any app asks


def container_environment(server: Mapping[str, str]) -> dict[str, str]:
    """The part of the server's environment a container starts with (Modal's containers start clean too)."""
    return {k: v for k, v in server.items() if (k in KEPT_VARIABLES or k.startswith(KEPT_PREFIXES))
            and k not in SERVER_ONLY}  # fmt: skip


def default_tmp_mib() -> int:
    """A container's private /tmp without ``memory=``: a quarter of the machine's memory (with it: the limit)."""
    from .resources import total_memory_mib  # not at the top: a server's start lays out its spare before that import

    return max(256, total_memory_mib() // 4)


def tmp_mib(spec: ContainerSpec) -> int:
    return int(spec.resources.memory_limit or default_tmp_mib())


class ForkedContainer(msgspec.Struct, frozen=True):
    """A container to fork: its fork server's template, its own environment, its private /tmp's size."""

    template: Template
    env: dict[str, str]
    tmp_mib: int


class Layout:
    """The layout of the containers of one local backend: their logs under ``log_dir`` (whose parent, the state
    directory, they never see, nor ``hidden``), their volumes in ``volumes``."""

    def __init__(self, log_dir: Path, volumes: VolumeDirs, hidden: tuple[str, ...] = ()) -> None:
        self.log_dir = log_dir
        self.volumes = volumes
        self.hidden = hidden

    def environment(self, spec: ContainerSpec) -> dict[str, str]:
        """The container's environment: the server's kept part, then the spec's and its image's."""
        env = container_environment(os.environ)
        env.update(spec.env)
        env.update(
            SHOAL_SERVER_URL=spec.server_url,
            SHOAL_CONTAINER_ID=spec.container_id,
            SHOAL_CONTAINER_TOKEN=spec.container_token,
            SHOAL_FUNCTION_ID=spec.function_id,
            SHOAL_APP_ID=spec.app_id,
            PYTHONUNBUFFERED="1",
        )
        # The container applies these itself, first thing: no preexec_fn (unsafe in a threaded parent).
        env["SHOAL_PARENT_PID"] = str(os.getpid())
        if spec.resources.memory_limit:
            env["SHOAL_MEMORY_LIMIT_MIB"] = str(spec.resources.memory_limit)
            env["MALLOC_ARENA_MAX"] = "2"  # keep glibc's per-thread arenas from eating the address-space limit
        image = spec.image or PreparedImage()
        env.update(image.env)
        if image.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join([*image.pythonpath, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        if sandbox.bwrap():
            env.pop("SHOAL_PARENT_PID")  # bwrap sits between the server and the container; --die-with-parent
            # Nothing of the server's state is visible inside: $SHOAL_HOME and the state directory are empty there.
            env.update(SHOAL_HOME=PRIVATE_HOME, SHOAL_BUNDLE_DIR=f"{PRIVATE_HOME}/bundles", HOME="/tmp")
        return env

    def in_sandbox(
        self, spec: ContainerSpec, program: list[str], fork_server: bool = False, devices: Sequence[str] = ()
    ) -> list[str]:
        """``program`` in the container's sandbox (bwrap's command line), with these device nodes passed through."""
        hidden = [str(settings().home), str(self.log_dir.parent), *self.hidden]
        workdir = (spec.image or PreparedImage()).workdir
        return sandbox.wrap(program, rw=self._rw_binds(spec), ro=self._ro_binds(spec), workdir=workdir, hidden=hidden,
                            tmp_mib=FORK_SERVER_TMP_MIB if fork_server else tmp_mib(spec),
                            fork_server=fork_server, devices=devices)  # fmt: skip

    def forked(self, spec: ContainerSpec) -> ForkedContainer:
        """How to fork the container from a fork server: the server's template, and the container's own part."""
        env = self._forked_environment(spec)
        return ForkedContainer(self._template(spec, env), env, tmp_mib(spec))

    def template(self, spec: ContainerSpec) -> Template:
        """The template of the fork server the container is forked from."""
        return self._template(spec, self._forked_environment(spec))

    def _forked_environment(self, spec: ContainerSpec) -> dict[str, str]:
        env = self.environment(spec)
        env.pop("SHOAL_PARENT_PID", None)  # it dies with its keeper, which dies with the fork server
        return env

    def _template(self, spec: ContainerSpec, env: dict[str, str]) -> Template:
        image = spec.image or PreparedImage()
        program = [image.python or sys.executable, "-m", "shoal.container.zygote"]
        isolate = sandbox.bwrap() is not None
        argv = self.in_sandbox(spec, program, fork_server=True) if isolate else program
        own = {k: v for k, v in env.items() if k in TEMPLATE_VARIABLES or k.startswith(TEMPLATE_PREFIXES)}
        own["SHOAL_FORK_ROOM"] = "-" * 4096  # room for each container's environment in /proc/<pid>/environ
        return Template(spec.app_id, tuple(argv), tuple(sorted(own.items())), None if isolate else image.workdir,
                        isolate)  # fmt: skip

    def _rw_binds(self, spec: ContainerSpec) -> list[tuple[str, str]]:
        binds = [(str(self._writable(self.volumes.dir(v.volume))), v.path) for v in spec.volumes if not v.read_only]
        binds += [(p, p) for p in settings().sandbox_binds]
        return binds

    @staticmethod
    def _writable(folder: Path) -> Path:
        """A volume's folder, owned by the sandbox's user where that is not the server's (root): its code writes
        there."""
        owner = sandbox.user()
        if owner is not None and folder.stat().st_uid != owner[0]:
            os.chown(folder, *owner)
        return folder

    def _ro_binds(self, spec: ContainerSpec) -> list[tuple[str, str]]:
        binds = []
        image = spec.image or PreparedImage()
        if image.python:
            root = str(Path(image.python).parent.parent)
            binds.append((root, root))
        binds += [(m.local, m.remote) for m in image.mounts]
        binds += [(str(self.volumes.dir(v.volume)), v.path) for v in spec.volumes if v.read_only]
        return binds
