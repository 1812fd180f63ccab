"""The benchmark's markdown: one table of medians [min-max], and Shoal's ratios to each peer."""

from __future__ import annotations

from typing import Any

from systems import TITLES

COLUMNS = [  # (header, workload, metric, format)
    ("COLD s", "COLD", "seconds", "{:.2f}"),
    ("LAT p50 ms", "LAT", "p50_ms", "{:.2f}"),
    ("LAT p99 ms", "LAT", "p99_ms", "{:.2f}"),
    ("W1 inputs/s", "W1", "per_s", "{:,.0f}"),
    ("W2 inputs/s", "W2", "per_s", "{:,.0f}"),
    ("W2 client MiB", "W2", "client_rss_mib", "{:.0f}"),
    ("W2 server MiB", "W2", "server_rss_mib", "{:.0f}"),
    ("W3 eff", "W3", "efficiency", "{:.0%}"),
    ("W3c eff", "W3c", "efficiency", "{:.0%}"),
    ("W4 s", "W4", "seconds", "{:.2f}"),
    ("W5 total s", "W5", "seconds", "{:.2f}"),
    ("W5 submits/s", "W5", "submits_per_s", "{:,.0f}"),
    ("W6 MiB/s", "W6", "mib_per_s", "{:.0f}"),
]
RATIOS = [  # (label, workload, metric, higher is better)
    ("W1 throughput", "W1", "per_s", True),
    ("LAT p50", "LAT", "p50_ms", False),
    ("COLD", "COLD", "seconds", False),
    ("W4 wall", "W4", "seconds", False),
    ("W5 total", "W5", "seconds", False),
    ("W6 MiB/s", "W6", "mib_per_s", True),
]


def cell(stats: dict[str, Any] | None, metric: str, fmt: str) -> str:
    if not stats or "skipped" in stats or metric not in stats:
        return "—"
    m = stats[metric]
    if m["min"] == m["max"]:
        return fmt.format(m["median"])
    return f"{fmt.format(m['median'])} [{fmt.format(m['min'])}–{fmt.format(m['max'])}]"


def median(report: dict[str, Any], system: str, workload: str, metric: str) -> float | None:
    stats = report["systems"].get(system, {}).get(workload)
    if not stats or "skipped" in stats or metric not in stats:
        return None
    return float(stats[metric]["median"])


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"Measured {report['date']} on {m['cpus']} CPUs, {m['memory_gib']} GiB, Python {m['python']}; "
        f"median [min–max] of {report['runs']} runs; versions: "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items())
        + ".",
        "",
        "| system | " + " | ".join(h for h, *_ in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for name, workloads in report["systems"].items():
        cells = [cell(workloads.get(w), metric, fmt) for _, w, metric, fmt in COLUMNS]
        lines.append(f"| {TITLES[name]} | " + " | ".join(cells) + " |")
    lines += ["", *ratios(report)]
    return "\n".join(lines) + "\n"


def ratios(report: dict[str, Any]) -> list[str]:
    peers = [name for name in report["systems"] if name != "shoal"]
    if "shoal" not in report["systems"] or not peers:
        return []
    lines = ["Shoal's advantage (× better than the peer; below 1 means the peer is faster):", "",
             "| metric | " + " | ".join(TITLES[p] for p in peers) + " |", "|---|" + "---|" * len(peers)]  # fmt: skip
    for label, workload, metric, higher in RATIOS:
        ours = median(report, "shoal", workload, metric)
        row = []
        for peer in peers:
            theirs = median(report, peer, workload, metric)
            if ours is None or theirs is None or min(ours, theirs) <= 0:
                row.append("—")
            else:
                row.append(f"{(ours / theirs if higher else theirs / ours):.2f}×")
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    return lines
