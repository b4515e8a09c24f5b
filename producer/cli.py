"""``python -m producer``: publish loan applications and their outcomes, and follow their scores.

Thin over the programmatic API (``producer.publish``, ``producer.follow_scores``, the
readers); this module only parses options, draws progress and reports.

Exit codes: 0 everything published (or the requested scores received); 1 something was
not (invalid rows, failed deliveries, Kafka unreachable, scores missing at the timeout);
2 bad usage, a bad file or bad settings; 130 interrupted with Ctrl-C.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Final, TextIO

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from contracts import LoanApplication
from contracts.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, settings_or_exit
from contracts.outcome import LoanOutcome
from contracts.topics import APPLICATIONS_TOPIC, OUTCOMES_TOPIC, SCORES_TOPIC
from producer.errors import ProducerError, SourceError
from producer.following import FollowReport, follow_scores
from producer.kafka import (
    LIBRDKAFKA_LOGGER,
    check_connection,
    create_consumer,
    create_producer,
    ensure_topic,
)
from producer.publishing import Publishable, PublishReport, publish
from producer.records import InvalidRecord, RecordSource
from producer.settings import ENV_PREFIX, Settings
from producer.sinks import JsonLinesSink, TableSink
from producer.sources import read_csv_applications, read_csv_outcomes, read_jsonl
from producer.synthetic import synthetic_applications

EXIT_INCOMPLETE: Final = EXIT_FAILED
DEFAULT_SYNTHETIC_COUNT: Final = 1_000
FOLLOW_GROUP_PREFIX: Final = "producer-follow"

app = typer.Typer(
    name="producer",
    help="Publish loan applications and their outcomes to Kafka, and follow their scores.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_err = Console(stderr=True, soft_wrap=True)


class SourceFormat(StrEnum):
    AUTO = "auto"
    CSV = "csv"
    JSONL = "jsonl"


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


def main() -> None:
    """Entry point of ``python -m producer``."""
    app()


@app.command("publish")
def publish_command(
    source: Annotated[
        Path | None,
        typer.Argument(help="A CSV in the dataset's layout, or JSON Lines of applications."),
    ] = None,
    source_format: Annotated[
        SourceFormat, typer.Option("--format", help="Source format; auto uses the extension.")
    ] = SourceFormat.AUTO,
    synthetic: Annotated[
        bool, typer.Option("--synthetic", help="Generate applications instead of reading a file.")
    ] = False,
    count: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Publish at most this many source rows "
            f"(synthetic default: {DEFAULT_SYNTHETIC_COUNT}).",
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed for --synthetic (random and printed if omitted).")
    ] = None,
    rate: Annotated[
        float, typer.Option(min=0.0, help="Messages per second; 0 = as fast as possible.")
    ] = 0.0,
    topic: Annotated[str, typer.Option(help="Topic to publish to.")] = APPLICATIONS_TOPIC,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate the source only; send nothing.")
    ] = False,
    show_invalid: Annotated[int, typer.Option(min=0, help="How many invalid rows to list.")] = 20,
) -> None:
    """Publish applications (keyed by application_id) and report their delivery."""
    with _user_errors():
        records = _open_source(source, source_format, synthetic, count, seed)
        _publish_source(records, count, topic, rate, dry_run=dry_run, show_invalid=show_invalid)


@app.command("publish-outcomes")
def publish_outcomes_command(
    source: Annotated[Path, typer.Argument(help="A CSV with the dataset's ID and label columns.")],
    observed_on: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"], help="The day the outcomes were observed (default: today, UTC)."
        ),
    ] = None,
    count: Annotated[
        int | None, typer.Option(min=0, help="Publish at most this many source rows.")
    ] = None,
    rate: Annotated[
        float, typer.Option(min=0.0, help="Messages per second; 0 = as fast as possible.")
    ] = 0.0,
    topic: Annotated[str, typer.Option(help="Topic to publish to.")] = OUTCOMES_TOPIC,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate the source only; send nothing.")
    ] = False,
    show_invalid: Annotated[int, typer.Option(min=0, help="How many invalid rows to list.")] = 20,
) -> None:
    """Publish the observed outcome of each application (keyed by application_id)."""
    day = (observed_on or datetime.now(UTC)).date()
    with _user_errors():
        records = read_csv_outcomes(source, observed_on=day)
        _publish_source(records, count, topic, rate, dry_run=dry_run, show_invalid=show_invalid)


@app.command("follow")
def follow_command(
    topic: Annotated[str, typer.Option(help="Topic to read scores from.")] = SCORES_TOPIC,
    group: Annotated[
        str | None,
        typer.Option(
            help="Consumer group; given, its position is committed and resumed. "
            "Default: a new unique group."
        ),
    ] = None,
    from_beginning: Annotated[
        bool,
        typer.Option(
            "--from-beginning/--latest", help="Where a group without a committed position starts."
        ),
    ] = False,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many scores.")] = None,
    timeout: Annotated[
        float | None, typer.Option(min=0.0, help="Stop after this many seconds.")
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="How scores are printed on stdout.")
    ] = OutputFormat.TABLE,
    output: Annotated[
        Path | None, typer.Option(help="Append scores as JSON Lines to this file instead.")
    ] = None,
) -> None:
    """Print (or write) the committed scores of the scores topic as they arrive."""
    with _user_errors():
        settings = _load_settings()
        with _score_stream(output) as stream:
            sink = JsonLinesSink(stream) if stream else _stdout_sink(output_format)
            report = _follow(settings, topic, group, from_beginning, sink, count, timeout)
    _err.print(
        f"received {report.received} scores ({report.invalid} invalid records skipped); "
        f"stopped: {report.stopped}",
        highlight=False,
    )
    if report.stopped == "interrupted":
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_INCOMPLETE if count and report.received < count else EXIT_OK)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the package's errors into one line on stderr and an exit code (no traceback)."""
    try:
        yield
    except SourceError as exc:
        _err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from exc
    except ProducerError as exc:
        _err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(EXIT_INCOMPLETE) from exc


def _publish_source(
    records: RecordSource[LoanApplication] | RecordSource[LoanOutcome],
    count: int | None,
    topic: str,
    rate: float,
    *,
    dry_run: bool,
    show_invalid: int,
) -> None:
    """Publish (or only validate) at most ``count`` records, report, and exit with the verdict."""
    total = records.total
    limited: Iterator[Publishable] = records if count is None else itertools.islice(records, count)
    if count is not None and total is not None:
        total = min(count, total)
    if dry_run:
        invalid = _validate_only(limited, total)
        _print_invalid(invalid, show_invalid)
        raise typer.Exit(EXIT_INCOMPLETE if invalid else EXIT_OK)
    report = _publish_with_progress(limited, total, topic, rate)
    _print_report(report, show_invalid)
    if report.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_OK if report.complete else EXIT_INCOMPLETE)


def _load_settings() -> Settings:
    settings = settings_or_exit(Settings, ENV_PREFIX)
    librdkafka = logging.getLogger(LIBRDKAFKA_LOGGER)
    librdkafka.setLevel(settings.kafka_log_level)
    librdkafka.addHandler(RichHandler(console=_err, show_path=False))
    librdkafka.propagate = False
    return settings


def _open_source(
    source: Path | None,
    source_format: SourceFormat,
    synthetic: bool,
    count: int | None,
    seed: int | None,
) -> RecordSource[LoanApplication]:
    if synthetic == (source is not None):
        raise SourceError("give exactly one of a SOURCE file or --synthetic")
    if source is None:
        if seed is None:
            seed = secrets.randbelow(2**31)
            _err.print(f"synthetic seed: {seed} (pass --seed {seed} to repeat)", highlight=False)
        return synthetic_applications(DEFAULT_SYNTHETIC_COUNT if count is None else count, seed)
    resolved = _resolve_format(source, source_format)
    return read_csv_applications(source) if resolved is SourceFormat.CSV else read_jsonl(source)


def _resolve_format(source: Path, source_format: SourceFormat) -> SourceFormat:
    if source_format is not SourceFormat.AUTO:
        return source_format
    by_suffix = {
        ".csv": SourceFormat.CSV,
        ".jsonl": SourceFormat.JSONL,
        ".ndjson": SourceFormat.JSONL,
    }
    try:
        return by_suffix[source.suffix.lower()]
    except KeyError:
        raise SourceError(
            f"cannot tell the format of {source} from its extension: pass --format csv|jsonl"
        ) from None


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=_err,
        transient=False,
    )


def _validate_only(records: Iterator[Publishable], total: int | None) -> list[InvalidRecord]:
    invalid: list[InvalidRecord] = []
    valid = 0
    with _progress() as bar:
        task = bar.add_task("validating", total=total, detail="")
        for record in records:
            if isinstance(record, InvalidRecord):
                invalid.append(record)
            else:
                valid += 1
            bar.advance(task)
    _err.print(f"dry run: {valid} valid, {len(invalid)} invalid, nothing sent", highlight=False)
    return invalid


def _publish_with_progress(
    records: Iterator[Publishable], total: int | None, topic: str, rate: float
) -> PublishReport:
    settings = _load_settings()
    check_connection(settings)
    producer = create_producer(settings)
    ensure_topic(
        producer,
        topic,
        bootstrap=settings.kafka_bootstrap_servers,
        timeout_s=settings.connect_timeout_s,
    )
    with _progress() as bar:
        task = bar.add_task(f"publishing to {topic}", total=total, detail="")

        def show(report: PublishReport) -> None:
            bar.update(
                task,
                completed=report.sent + len(report.invalid),
                detail=f"delivered {report.delivered} · {report.throughput:,.0f} msg/s",
            )

        return publish(
            records,
            producer=producer,
            topic=topic,
            rate=rate,
            flush_timeout_s=settings.flush_timeout_s,
            progress=show,
        )


def _print_report(report: PublishReport, show_invalid: int) -> None:
    table = Table(title=f"delivery summary: {report.topic}", show_header=False)
    rows = {
        "sent": f"{report.sent:,}",
        "delivered": f"{report.delivered:,}",
        "failed": f"{report.failed:,}",
        "invalid (not sent)": f"{len(report.invalid):,}",
        "elapsed": f"{report.elapsed_s:.2f} s",
        "throughput": f"{report.throughput:,.0f} msg/s",
    }
    for name, value in rows.items():
        table.add_row(name, value)
    Console().print(table)
    for reason, failures in report.failures.most_common():
        _err.print(f"[red]failed[/red] {failures:,}: {escape(reason)}", highlight=False)
    if report.interrupted:
        _err.print("[yellow]interrupted:[/yellow] the rest of the source was not sent")
    _print_invalid(report.invalid, show_invalid)


def _print_invalid(invalid: list[InvalidRecord], limit: int) -> None:
    if not invalid or limit == 0:
        return
    table = Table("line", "field", "reason", title=f"{len(invalid):,} invalid rows (not sent)")
    for record in invalid[:limit]:
        for issue in record.issues:
            table.add_row(str(record.line), escape(issue.field), escape(issue.reason))
    _err.print(table)
    if len(invalid) > limit:
        _err.print(f"… and {len(invalid) - limit:,} more invalid rows", highlight=False)


@contextmanager
def _score_stream(output: Path | None) -> Iterator[TextIO | None]:
    if output is None:
        yield None
        return
    try:
        handle = output.open("a", encoding="utf-8")
    except OSError as exc:
        raise SourceError(f"cannot write {output}: {exc.strerror or exc}") from exc
    with handle:
        yield handle


def _stdout_sink(output_format: OutputFormat) -> JsonLinesSink | TableSink:
    if output_format is OutputFormat.JSON:
        return JsonLinesSink(sys.stdout)
    return TableSink(Console(highlight=False, soft_wrap=True))


def _follow(
    settings: Settings,
    topic: str,
    group: str | None,
    from_beginning: bool,
    sink: JsonLinesSink | TableSink,
    count: int | None,
    timeout: float | None,
) -> FollowReport:
    # A throwaway group has no position worth committing; a named one resumes from its own.
    group_id = group or f"{FOLLOW_GROUP_PREFIX}-{uuid.uuid4().hex[:12]}"
    check_connection(settings)
    consumer = create_consumer(
        settings, group_id=group_id, from_beginning=from_beginning, commit=group is not None
    )
    try:
        ensure_topic(
            consumer,
            topic,
            bootstrap=settings.kafka_bootstrap_servers,
            timeout_s=settings.connect_timeout_s,
        )
        _err.print(f"following {topic} as group {group_id} (Ctrl-C to stop)", highlight=False)
        return follow_scores(
            consumer,
            sink=sink,
            topic=topic,
            count=count,
            timeout_s=timeout,
            on_problem=lambda problem: _err.print(f"[yellow]skipped:[/yellow] {escape(problem)}"),
        )
    finally:
        consumer.close()
