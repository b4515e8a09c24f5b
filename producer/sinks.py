"""Where followed scores go: JSON Lines (a file or stdout) or a compact live table."""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.markup import escape

from producer.following import ReceivedScore

_TABLE_HEADER = (
    f"{'application_id':<24} {'P(default)':>10} {'decision':<8} {'threshold':>9} "
    f"{'model':<20} {'scored_at':<19} top reasons"
)


class JsonLinesSink:
    """Writes each score as one ``LoanScore`` JSON object per line, flushed as it arrives."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, received: ReceivedScore) -> None:
        self._stream.write(received.score.model_dump_json() + "\n")
        self._stream.flush()


class TableSink:
    """Prints one aligned row per score under a header printed before the first row.

    The console should not wrap (``soft_wrap=True``): one score, one line, its top
    reasons (codes and sentences) last.
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self._header_printed = False

    def __call__(self, received: ReceivedScore) -> None:
        if not self._header_printed:
            self._console.print(_TABLE_HEADER, style="bold", highlight=False)
            self._header_printed = True
        score = received.score
        decision = "[red]default[/red] " if score.predicted_default else "[green]ok[/green]      "
        model = escape(f"{score.model_name} v{score.model_version}")
        self._console.print(
            f"{escape(score.application_id):<24} {score.default_probability:>10.4f} {decision} "
            f"{score.threshold:>9.3f} {model:<20} {score.scored_at:%Y-%m-%d %H:%M:%S} "
            f"{_reasons(received)}",
            highlight=False,
        )


def _reasons(received: ReceivedScore) -> str:
    score = received.score
    if score.reasons_unavailable:
        return "[yellow](reasons unavailable)[/yellow]"
    if not score.reasons:
        return "-"
    return escape("; ".join(f"{r.code}: {r.text}" for r in score.reasons))
