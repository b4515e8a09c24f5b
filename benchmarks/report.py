"""Render a run: JSON, a markdown table, a latency plot, and the README's latest table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt

from benchmarks.results import P99_BUDGET_MS, BenchResults, Throughput

README_START: Final = "<!-- bench:start -->"
README_END: Final = "<!-- bench:end -->"
JSON_NAME: Final = "results.json"
MARKDOWN_NAME: Final = "results.md"
PLOT_NAME: Final = "latency.png"
_STAGES: Final = ("consume", "decode", "score", "produce", "commit", "other")


def _cores(cores: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in cores.items())


def _drain_row(label: str, run: Throughput, unit: str) -> str:
    notes = [f"{run.records:,} in {run.window_s:.1f} s steady window ({run.drain_s:.1f} s drain)"]
    if run.transactions:
        notes.append(f"{run.transactions:,} transactions")
    if run.peak_rss_mb:
        ready = ", ".join(f"{mb:.0f}" for mb in run.ready_rss_mb.values())
        peaks = ", ".join(f"{mb:.0f}" for mb in run.peak_rss_mb.values())
        notes.append(
            f"RSS once ready {ready} MB, peak {peaks} MB" if ready else f"peak RSS {peaks} MB"
        )
    if run.stage_us:
        stages = ", ".join(
            f"{stage} {run.stage_us[stage]:.1f}" for stage in _STAGES if stage in run.stage_us
        )
        notes.append(f"µs/application: {stages}")
    notes.append(f"cores: {_cores(run.cores)}")
    return f"| {label} | {run.rate:,.0f} {unit} | {'; '.join(notes)} |"


def machine_line(results: BenchResults) -> str:
    m = results.machine
    load = " / ".join(f"{v:.2f}" for v in m.load_average)
    end = " / ".join(f"{v:.2f}" for v in results.load_average_end)
    return (
        f"Machine: {m.nproc} x {m.cpu_model}, {m.memory_gib:.1f} GiB, Python {m.python}, "
        f"{m.platform}. Load average (1/5/15 min) at start {load}, at end {end}."
    )


def run_line(results: BenchResults) -> str:
    c = results.config
    mode = "quick" if results.quick else "full"
    return (
        f"Run {results.started_at:%Y-%m-%d %H:%M} UTC of commit {results.machine.source} "
        f"({mode}, {results.duration_s / 60:.1f} min): "
        f"{c['messages']:,} preloaded applications on {c['partitions']} partitions; worker "
        f"batches of up to {c['batch_max_messages']} records or {c['batch_max_wait_ms']} ms; "
        f"champion {results.champion['family']} (version {results.champion['version']})."
        + _extras(c)
    )


def _extras(config: dict[str, object]) -> str:
    """The librdkafka overrides the workers ran with, if any (``SCORER_*_EXTRA``)."""
    extras = {
        name: value
        for name in ("kafka_extra", "consumer_extra", "producer_extra")
        if (value := config.get(name))
    }
    if not extras:
        return ""
    shown = "; ".join(f"{name} {value}" for name, value in extras.items())
    return f" Worker overrides: {shown}."


def markdown(results: BenchResults) -> str:
    """The run as markdown: context lines, throughput, latency and targets tables."""
    b = results.ceiling_b
    floor = results.floor
    lines = [
        machine_line(results),
        "",
        run_line(results),
        "",
        "| measure | result | notes |",
        "| --- | ---: | --- |",
        _drain_row("Ceiling A: Kafka passthrough", results.ceiling_a, "msg/s"),
        f"| Ceiling B: champion alone | {b.model_us_per_row:.2f} µs/row | "
        f"{b.model_rows_per_s:,.0f} rows/s per core at batch {b.batch_size} (CPU time; wall "
        f"{b.model_wall_us_per_row:.2f} µs/row); in isolation: decode "
        f"{b.decode_us_per_row:.1f} µs/row, feature assembly {b.features_us_per_row:.1f} µs/row |",
        f"| Floor: naive scorer | {floor.rate:,.0f} msg/s | {floor.records:,} messages in "
        f"{floor.seconds:.1f} s |",
    ]
    for run in results.workers:
        label = f"Worker x {run.processes}"
        lines.append(_drain_row(label, run, "scores/s"))
    lines += ["", _ratios(results), "", *latency_table(results), "", *targets_table(results)]
    lines += ["", *profile_lines(results)]
    return "\n".join(lines) + "\n"


def _ratios(results: BenchResults) -> str:
    def shown(key: str, percent: bool = False) -> str:
        value = results.ratios.get(key)
        if value is None:
            return "—"
        return f"{value:.0%}" if percent else f"{value:.2f}x"

    return (
        f"Ratios: worker / ceiling A = {shown('worker/ceiling_a', percent=True)}; "
        f"worker / floor = {shown('worker/floor')}; "
        f"two workers / one = {shown('two_workers/one_worker')}."
    )


def latency_table(results: BenchResults) -> list[str]:
    lines = [
        "| rate (target) | achieved | samples | p50 | p95 | p99 | max | cores |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for p in results.latency:
        lines.append(
            f"| {p.rate:,}/s | {p.achieved_rate:,.0f}/s | {p.count:,} | {p.p50_ms:.0f} ms | "
            f"{p.p95_ms:.0f} ms | {p.p99_ms:.0f} ms | {p.max_ms:.0f} ms | {_cores(p.cores)} |"
        )
    return lines


def targets_table(results: BenchResults) -> list[str]:
    lines = ["| target | goal | measured | status | note |", "| --- | --- | --- | --- | --- |"]
    for t in results.targets:
        status = {"met": "**met**", "missed": "**missed**"}.get(t.status, t.status)
        lines.append(f"| {t.name} | {t.goal} | {t.measured} | {status} | {t.note} |")
    return lines


def profile_lines(results: BenchResults) -> list[str]:
    if not results.profile:
        return [f"Profile: {results.profile_note}."]
    lines = [f"Profile ({results.profile_note}):", ""]
    lines += [f"- {100 * f.share:.1f}% `{f.function}`" for f in results.profile]
    return lines


def replace_table(readme: str, table: str) -> str:
    """``readme`` with the text between the bench markers replaced by ``table``.

    Without markers, a section holding them is appended.
    """
    block = f"{README_START}\n{table.rstrip()}\n{README_END}"
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.DOTALL)
    if pattern.search(readme):
        return pattern.sub(lambda _match: block, readme, count=1)
    return f"{readme.rstrip()}\n\n## Latest results\n\n{block}\n"


def plot_latency(results: BenchResults, path: Path) -> None:
    """p50/p95/p99 end-to-end latency against publishing rate, with the p99 budget."""
    rates = [p.rate for p in results.latency]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, values in (
        ("p50", [p.p50_ms for p in results.latency]),
        ("p95", [p.p95_ms for p in results.latency]),
        ("p99", [p.p99_ms for p in results.latency]),
    ):
        axes.plot(rates, values, marker="o", label=label)
    axes.axhline(P99_BUDGET_MS, color="grey", linestyle="--", label="p99 budget")
    axes.set_xlabel("applications per second (published)")
    axes.set_ylabel("end-to-end latency (ms)")
    axes.set_title(f"Produce → read_committed score ({results.machine.nproc} cores)")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write(results: BenchResults, directory: Path, readme: Path | None) -> Path:
    """Write JSON, markdown and plot into ``directory``; rewrite ``readme``'s table if given.

    Returns the markdown file.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / JSON_NAME).write_text(results.model_dump_json(indent=2) + "\n")
    table = markdown(results)
    (directory / MARKDOWN_NAME).write_text(table)
    if results.latency:
        plot_latency(results, directory / PLOT_NAME)
    if readme is not None:
        current = readme.read_text() if readme.exists() else "# Benchmarks\n"
        readme.write_text(replace_table(current, table))
    return directory / MARKDOWN_NAME
