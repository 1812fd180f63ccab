"""Charts drawn on the server as inline SVG (no script, no build step, no CDN): a container's CPU, memory and
GPU over time, a function's (its containers summed), and a call's throughput and running containers."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import msgspec

from ..core.records import CallSample, ContainerSample

WIDTH, HEIGHT, PAD = 360, 90, 4


class Chart(msgspec.Struct, frozen=True):
    """One series over time: its name (an element id), title, unit and (time, value) points."""

    name: str
    title: str
    unit: str
    points: tuple[tuple[float, float], ...]

    @property
    def peak(self) -> float:
        return max((v for _, v in self.points), default=0.0)

    @property
    def last(self) -> float | None:
        return self.points[-1][1] if self.points else None

    def svg(self) -> str:
        """The chart as a ``<figure>`` holding its SVG (safe HTML: every text escaped)."""
        title = escape(self.title)
        if len(self.points) < 2:
            return (f'<figure class="chart" id="chart-{escape(self.name)}" data-points="{len(self.points)}">'
                    f"<figcaption>{title}: not enough samples yet</figcaption></figure>")  # fmt: skip
        t0, t1 = self.points[0][0], self.points[-1][0]
        top = self.peak * 1.1 or 1.0
        span = (t1 - t0) or 1.0

        def xy(t: float, v: float) -> str:
            x = PAD + (WIDTH - 2 * PAD) * (t - t0) / span
            y = HEIGHT - PAD - (HEIGHT - 2 * PAD) * v / top
            return f"{x:.1f},{y:.1f}"

        line = " ".join(xy(t, v) for t, v in self.points)
        area = f"{xy(t0, 0)} {line} {xy(t1, 0)}"
        caption = (f"{title}: {_fmt(self.last or 0.0)} {escape(self.unit)} at the latest sample, peak "
                   f"{_fmt(self.peak)} · over {_span(t1 - t0)}")  # fmt: skip
        return (
            f'<figure class="chart" id="chart-{escape(self.name)}" data-points="{len(self.points)}" '
            f'data-peak="{self.peak:.3f}"><figcaption>{caption}</figcaption>'
            f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{title}">'
            f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" class="chart-bg"/>'
            f'<polygon points="{area}" class="chart-area"/><polyline points="{line}" class="chart-line"/>'
            f'<text x="{WIDTH - PAD}" y="12" text-anchor="end" class="chart-label">{_fmt(top)}</text>'
            "</svg></figure>"
        )


def resource_charts(samples: Sequence[ContainerSample], prefix: str = "") -> list[Chart]:
    """CPU and memory, and GPU utilization and memory where the samples have them."""
    charts = [
        Chart(f"{prefix}cpu", "CPU", "% of a core", tuple((s.at, s.cpu) for s in samples)),
        Chart(f"{prefix}memory", "Memory", "MiB", tuple((s.at, s.memory_mib) for s in samples)),
    ]
    if any(s.gpu is not None for s in samples):
        charts.append(Chart(f"{prefix}gpu", "GPU", "% busy", tuple((s.at, s.gpu or 0.0) for s in samples)))
        charts.append(Chart(f"{prefix}gpu-memory", "GPU memory", "MiB",
                            tuple((s.at, s.gpu_memory_mib or 0.0) for s in samples)))  # fmt: skip
    return charts


def call_charts(samples: Sequence[CallSample]) -> list[Chart]:
    """Results per second between samples, and the function's containers."""
    rates = tuple((b.at, max(0, b.done - a.done) / ((b.at - a.at) or 1.0)) for a, b in zip(samples, samples[1:]))
    return [
        Chart("throughput", "Throughput", "results/s", rates),
        Chart("containers", "Containers", "running", tuple((s.at, float(s.containers)) for s in samples)),
    ]


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _span(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
