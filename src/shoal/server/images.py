"""Image builds on the server: the backend prepares each image once, callers follow its build log.

A caller (``app.run``/``deploy``) asks for an image by its spec; the first ask starts the backend's
``prepare_image`` on a worker thread, every ask long-polls the build's log lines after the ones it has and
learns when it is ready or why it failed. Prepared images are kept by hash; after a restart the backend's own
cache (the local backend: a virtualenv per hash) makes preparing again cheap.
"""

from __future__ import annotations

import asyncio

import msgspec

from ..backends.base import Backend
from ..exception import ImageBuildError
from ..protocol.specs import ImageSpec, PreparedImage
from .blobs import BlobStore
from .notifier import Notifier


class Build(msgspec.Struct):
    lines: list[str] = msgspec.field(default_factory=list)
    prepared: PreparedImage | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = None

    @property
    def state(self) -> str:
        return "ready" if self.prepared else "failed" if self.error else "building"


class ImageBuilds:
    def __init__(self, backend: Backend, blobs: BlobStore, notifier: Notifier) -> None:
        self.backend, self.blobs, self.notifier = backend, blobs, notifier
        self.builds: dict[str, Build] = {}

    def start(self, image: ImageSpec, retry_failed: bool = True) -> Build:
        """The build of ``image``: started now unless it is under way or done (a failed one is tried again when
        ``retry_failed``)."""
        build = self.builds.get(image.hash)
        if build is None or (retry_failed and build.error is not None):
            build = self.builds[image.hash] = Build()
            build.task = asyncio.create_task(self._run(image, build))
        return build

    async def follow(self, image: ImageSpec, since: int, wait: float) -> tuple[Build, list[str]]:
        """The build and its log lines after the first ``since``, waiting up to ``wait`` s for news."""
        build = self.start(image, retry_failed=since == 0)
        lines = await self.notifier.poll(
            "image:" + image.hash, wait, lambda: build.lines[since:], lambda new: bool(new) or build.state != "building"
        )
        return build, lines

    async def prepared(self, image: ImageSpec) -> PreparedImage:
        """The prepared image, preparing it (again, after a restart) if needed."""
        build = self.start(image)
        assert build.task is not None
        await asyncio.shield(build.task)
        if build.prepared is None:
            raise ImageBuildError(build.error or "the image build failed")
        return build.prepared

    async def _run(self, image: ImageSpec, build: Build) -> None:
        loop = asyncio.get_running_loop()
        topic = "image:" + image.hash

        def add(line: str) -> None:
            build.lines.append(line)
            self.notifier.notify(topic)

        def log(line: str) -> None:  # on the build's thread
            loop.call_soon_threadsafe(add, line)

        try:
            build.prepared = await asyncio.to_thread(self.backend.prepare_image, image, log, self.blobs.get)
        except ImageBuildError as exc:
            build.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure of a build is that build's error
            build.error = f"The image build failed: {type(exc).__name__}: {exc}"
        await asyncio.sleep(0)  # let the last log lines land first
        self.notifier.notify(topic)
