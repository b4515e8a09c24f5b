"""``python -m scripts.demo`` (``make demo``): the main job end to end on this machine, no Docker.

Stages, each shown as it runs: check the data; start a Kafka broker (``scripts/kafka-local``)
and an MLflow server (SQLite) on free ports; create the worker's topics; train in quick mode
and register the champion; start the worker (``python -m consumer``) and wait for ``/readyz``;
publish COUNT applications from the dataset; follow the outcomes (scores and dead letters,
``read_committed``) until all of them arrived or the deadline passed; print a summary; stop
everything it started, in that order: worker (SIGTERM), broker, MLflow. Ctrl-C and SIGTERM
stop everything too. ``--keep-running`` leaves the services up after a successful run and
prints how to stop them (``python -m scripts.demo stop RUN_DIR``).

Each run keeps its files in a directory of its own under ``--workdir`` (default
``.cache/demo``): the broker's data and log, the MLflow store and artifacts, the worker's
log and ``services.json`` (what was started, for ``stop``).

Exit codes: 0 every application had its outcome; 1 a stage failed (the reason in one line on
stderr); 2 bad options; 130 or 143 interrupted by SIGINT or SIGTERM.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, Final, Literal, TypeVar

import typer
from confluent_kafka import Consumer, KafkaError
from mlflow.utils.autologging_utils import MlflowEventsAndWarningsBehaviorGlobally
from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from contracts import LoanApplication
from contracts.score import LoanScore
from contracts.topics import (
    APPLICATIONS_TOPIC,
    DEAD_LETTER_TOPIC,
    PREDICTIONS_TOPIC,
    SCORES_TOPIC,
)
from producer import (
    InvalidRecord,
    ProducerError,
    PublishReport,
    create_consumer,
    create_producer,
    publish,
    read_csv_applications,
)
from producer import Settings as ProducerSettings
from producer.kafka import LIBRDKAFKA_LOGGER
from scripts.services import (
    ROOT,
    LocalBroker,
    MlflowServer,
    ServiceError,
    WorkerProcess,
    create_topics,
    free_port,
    stop_detached,
)
from training import CandidateResult, TrainingError, TrainingSettings, train

EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
SERVICES_FILE: Final = "services.json"
WORKER_ID: Final = "demo"
APPLICATION_PARTITIONS: Final = 3
_FOLLOW_BATCH: Final = 500
_FOLLOW_POLL_S: Final = 0.2
_WORKER_MARKER: Final = "-m consumer"
_MLFLOW_MARKER: Final = "mlflow"

_T = TypeVar("_T")
_Display = Literal["spinner", "header", "own"]


class DemoSettings(BaseSettings):
    """What one demo run is told: CLI options over ``DEMO_*`` variables (``RUMOS_DATA``)."""

    model_config = SettingsConfigDict(
        env_prefix="DEMO_", extra="ignore", frozen=True, validate_by_name=True
    )

    count: int = Field(default=1_000, ge=1, description="applications to publish")
    data: Path = Field(
        default=ROOT / "data" / "credit_default.csv",
        validation_alias=AliasChoices("RUMOS_DATA", "DEMO_DATA"),
    )
    timeout_s: float = Field(
        default=120.0, gt=0, description="seconds to wait for every outcome once publishing starts"
    )
    worker_ready_timeout_s: float = Field(default=180.0, gt=0)
    keep_running: bool = False
    summary_json: Path | None = None
    workdir: Path = ROOT / ".cache" / "demo"


class DemoError(Exception):
    """A stage of the demo failed; the message says why in one line."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived while the demo ran (a BaseException, like KeyboardInterrupt,
    so that no library's ``except Exception`` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass(frozen=True)
class Champion:
    """The model the worker serves, as its ``/model`` endpoint describes it."""

    name: str
    version: str
    family: str
    roc_auc: float | None
    expected_cost: float | None
    threshold: float


@dataclass
class Outcomes:
    """What arrived on the scores and dead-letter topics (committed records only)."""

    scores: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    unreadable: int = 0
    predicted_default: int = 0
    last_at: float | None = None
    _seen: set[str] = field(default_factory=set, repr=False)

    @property
    def total(self) -> int:
        return self.scores + self.dead_letters

    def add_score(self, score: LoanScore, at: float) -> None:
        if score.application_id in self._seen:
            self.duplicates += 1
            return
        self._seen.add(score.application_id)
        self.scores += 1
        self.predicted_default += score.predicted_default
        self.last_at = at

    def add_dead_letter(self, at: float) -> None:
        self.dead_letters += 1
        self.last_at = at


@dataclass
class Summary:
    """The run's record: printed, and written as JSON by ``--summary-json``."""

    run_dir: str
    count: int
    ok: bool = False
    failure: str | None = None
    published: int = 0
    publish_s: float | None = None
    scores: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    predicted_default_rate: float | None = None
    end_to_end_s: float | None = None
    throughput_per_s: float | None = None
    champion: Champion | None = None
    mlflow_url: str | None = None
    kafka_bootstrap: str | None = None
    kafka_dir: str | None = None
    pids: dict[str, int] = field(default_factory=dict)
    kept_running: bool = False
    stages: dict[str, float] = field(default_factory=dict)
    total_s: float | None = None


@dataclass
class _Run:
    """The services this run started, in the order they must be stopped."""

    directory: Path
    worker: WorkerProcess | None = None
    broker: LocalBroker | None = None
    mlflow: MlflowServer | None = None


class _Stages:
    """Shows each stage as it runs and a ✓ line with its duration when it ends."""

    def __init__(self, console: Console, summary: Summary, guard: _SignalGuard) -> None:
        self.console = console
        self.summary = summary
        self.guard = guard
        self.current: str | None = None

    @contextmanager
    def run(self, title: str, *, display: _Display = "spinner") -> Iterator[Callable[[str], None]]:
        """Run a stage; the caller reports its result through the function it is given.

        ``display``: a spinner with the title, the title as a line before the stage's own
        output ("header"), or nothing ("own": the stage draws its own progress bar).
        """
        result = [title]
        self.guard.check()
        self.current = title
        started = time.monotonic()
        try:
            if display == "spinner":
                with self.console.status(f"{title}…"):
                    yield result.append
            else:
                if display == "header":
                    self.console.print(f"[bold]{title}…[/]")
                yield result.append
            self.guard.check()
        except BaseException:
            self.console.print(f"[red]✗[/] {escape(title)}")
            raise
        elapsed = time.monotonic() - started
        self.summary.stages[title] = round(elapsed, 2)
        self.console.print(f"[green]✓[/] {escape(result[-1])} [dim]· {elapsed:.1f} s[/]")
        self.current = None


class _SignalGuard:
    """Turns SIGINT and SIGTERM into ``Interrupted`` until ``stopping`` is set; after that,
    while the services are being stopped, they are noted and otherwise ignored.

    The handler raises wherever the main thread is, and that can be inside a finalizer,
    where Python prints the exception and drops it: the signal is also remembered in
    ``pending`` so that ``check()``, called between stages, raises it again.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.stopping = False
        self.pending: int | None = None

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def check(self) -> None:
        """Raise ``Interrupted`` if a signal arrived (and the services are not being stopped)."""
        if self.pending is not None and not self.stopping:
            raise Interrupted(self.pending)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping:
            self.console.print(f"{signal.Signals(signum).name}: still stopping the services…")
            return
        self.pending = signum
        raise Interrupted(signum)


# --- stages -----------------------------------------------------------------------------


def _load_applications(settings: DemoSettings) -> tuple[list[LoanApplication], int]:
    """The first ``count`` valid applications of the dataset, and how many rows were skipped."""
    path = settings.data
    if not path.is_file():
        raise DemoError(
            f"no dataset at {path}: pass --data or set RUMOS_DATA "
            "(scripts/bootstrap links data/credit_default.csv from ../shared/data)"
        )
    try:
        records = read_csv_applications(path)
    except ProducerError as exc:
        raise DemoError(str(exc)) from exc
    valid: list[LoanApplication] = []
    skipped = 0
    for record in records:
        if len(valid) == settings.count:
            break
        if isinstance(record, InvalidRecord):
            skipped += 1
        else:
            valid.append(record)
    if len(valid) < settings.count:
        raise DemoError(
            f"{path} has {len(valid)} valid applications, fewer than the {settings.count} asked for"
        )
    return valid, skipped


def _train(tracking_uri: str, data: Path, console: Console) -> CandidateResult:
    """Train every family in quick mode; the champion it promoted.

    MLflow's own event messages ("Created version 3 ...", two or three per candidate) are
    muted meanwhile: training prints one line per candidate, and failures raise. MLflow's
    counting context is used because its own nested uses re-enable a plain
    ``disable_logging()`` when they exit.
    """
    settings = TrainingSettings(quick=True, data=data, tracking_uri=tracking_uri)
    mute = MlflowEventsAndWarningsBehaviorGlobally(
        disable_event_logs=True, disable_warnings=False, reroute_warnings=False
    )
    try:
        with mute:
            report = train(settings, console=console)
    except TrainingError as exc:
        raise DemoError(f"training failed: {exc}") from exc
    if report.champion is None:
        raise DemoError(f"training promoted nothing: {report.selection_reason}")
    return report.champion


def _worker_env(run: _Run, bootstrap: str, tracking_uri: str) -> dict[str, str]:
    """This process's environment without ``SCORER_*`` (the demo decides them all) and
    without a registry URI (a worker is told only the tracking URI), plus the run's own."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("SCORER_") and name != "MLFLOW_REGISTRY_URI"
    }
    return {
        **inherited,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "SCORER_WORKER_ID": WORKER_ID,
        "SCORER_MODEL_CACHE_DIR": str(run.directory / "model-cache"),
        "SCORER_HTTP_HOST": "127.0.0.1",
        "SCORER_HTTP_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }


def _serving(worker: WorkerProcess, promoted: CandidateResult) -> Champion:
    """The champion the worker serves, checked against the one training promoted."""
    status, body = worker.get_json("/model")
    if status != 200 or not isinstance(body, dict):
        raise DemoError(f"the worker's /model answered {status}: {body}")
    if str(body["version"]) != promoted.version:
        raise DemoError(
            f"the worker serves version {body['version']}, training promoted {promoted.version}"
        )
    metrics = body.get("metrics") or {}
    return Champion(
        name=str(body["name"]),
        version=str(body["version"]),
        family=str(promoted.family),
        roc_auc=metrics.get("roc_auc"),
        expected_cost=metrics.get("expected_cost"),
        threshold=float(body["threshold"]),
    )


def _publish(
    applications: list[LoanApplication], settings: ProducerSettings, console: Console
) -> PublishReport:
    try:
        producer = create_producer(settings)
    except ProducerError as exc:
        raise DemoError(str(exc)) from exc
    with _progress(console) as progress:
        task = progress.add_task("publishing applications", total=len(applications))
        report = publish(
            applications,
            producer=producer,
            flush_timeout_s=settings.flush_timeout_s,
            progress=lambda r: progress.update(task, completed=r.sent),
        )
    if not report.complete or report.delivered != len(applications):
        reasons = "; ".join(f"{n} x {reason}" for reason, n in report.failures.items())
        raise DemoError(
            f"published {report.delivered} of {len(applications)} applications: {reasons}"
        )
    return report


def _follower(settings: ProducerSettings) -> Consumer:
    """A ``read_committed`` consumer of a fresh group, subscribed to scores and dead letters
    from their beginning."""
    try:
        consumer = create_consumer(
            settings,
            group_id=f"demo-follow-{uuid.uuid4().hex[:12]}",
            from_beginning=True,
            commit=False,
        )
    except ProducerError as exc:
        raise DemoError(str(exc)) from exc
    consumer.subscribe([SCORES_TOPIC, DEAD_LETTER_TOPIC])
    return consumer


def _follow(
    consumer: Consumer,
    count: int,
    deadline: float,
    console: Console,
    *,
    clock: Callable[[], float] = time.monotonic,
    check_signals: Callable[[], None] = lambda: None,
) -> Outcomes:
    """Read committed scores and dead letters until ``count`` distinct outcomes or the deadline."""
    outcomes = Outcomes()
    with _progress(console) as progress:
        task = progress.add_task("scores and dead letters", total=count)
        while outcomes.total < count and clock() < deadline:
            check_signals()
            for message in consumer.consume(_FOLLOW_BATCH, _FOLLOW_POLL_S):
                _take(message, outcomes, clock())
            progress.update(task, completed=outcomes.total)
    return outcomes


def _take(message: Any, outcomes: Outcomes, at: float) -> None:
    error: KafkaError | None = message.error()
    if error is not None:
        if error.fatal():
            raise DemoError(f"fatal Kafka error while following: {error.str()}")
        return
    if message.topic() == DEAD_LETTER_TOPIC:
        outcomes.add_dead_letter(at)
        return
    try:
        outcomes.add_score(LoanScore.model_validate_json(message.value() or b""), at)
    except ValidationError:
        outcomes.unreadable += 1


@contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    columns = (
        TextColumn("  {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        yield progress


# --- the run ----------------------------------------------------------------------------


def _run_stages(
    settings: DemoSettings, run: _Run, summary: Summary, stages: _Stages, console: Console
) -> None:
    with stages.run("Checking the data") as done:
        applications, skipped = _load_applications(settings)
        note = f", {skipped} invalid rows skipped" if skipped else ""
        done(f"{len(applications):,} applications from {_relative(settings.data)}{note}")

    run.directory.mkdir(parents=True, exist_ok=True)
    broker = run.broker = LocalBroker(run.directory / "kafka")  # stop() needs only its dir
    summary.kafka_dir, summary.kafka_bootstrap = str(broker.directory), broker.bootstrap_servers
    with stages.run("Starting Kafka (scripts/kafka-local; Maven fetches it once)") as done:
        _service(broker.start)
        summary.pids["broker"] = broker.pid or 0
        done(f"Kafka on {broker.bootstrap_servers} (pid {broker.pid})")

    with stages.run("Starting MLflow (SQLite, proxied artifacts)") as done:
        mlflow = run.mlflow = _service(lambda: MlflowServer.start(run.directory / "mlflow"))
        summary.mlflow_url, summary.pids["mlflow"] = mlflow.url, mlflow.pid
        done(f"MLflow on {mlflow.url} (pid {mlflow.pid})")

    with stages.run("Creating the worker's topics") as done:
        topics = {
            APPLICATIONS_TOPIC: APPLICATION_PARTITIONS,
            SCORES_TOPIC: 1,
            DEAD_LETTER_TOPIC: 1,
            PREDICTIONS_TOPIC: 1,
        }
        _service(lambda: create_topics(broker.bootstrap_servers, topics))
        done(f"topics {', '.join(topics)}")

    with stages.run("Training in quick mode", display="header") as done:
        champion = _train(mlflow.url, settings.data, console)
        done(f"champion: version {champion.version} ({champion.family})")

    with stages.run("Starting the worker (python -m consumer)") as done:
        env = _worker_env(run, broker.bootstrap_servers, mlflow.url)
        worker = run.worker = WorkerProcess(env, run.directory / "worker.log")
        summary.pids["worker"] = worker.pid
        _service(lambda: worker.wait_ready(settings.worker_ready_timeout_s))
        summary.champion = _serving(worker, champion)
        done(f"worker ready on {worker.url} (pid {worker.pid}), serving the champion")

    producer_settings = ProducerSettings(kafka_bootstrap_servers=broker.bootstrap_servers)
    with closing(_follower(producer_settings)) as follower:  # joins its group while we publish
        publish_started = time.monotonic()
        with stages.run(f"Publishing {len(applications):,} applications", display="own") as done:
            published = _publish(applications, producer_settings, console)
            summary.published, summary.publish_s = published.delivered, published.elapsed_s
            done(f"published {published.delivered:,} ({published.throughput:,.0f}/s)")
        with stages.run("Following the outcomes (read_committed)", display="own") as done:
            deadline = publish_started + settings.timeout_s
            outcomes = _follow(
                follower, settings.count, deadline, console, check_signals=stages.guard.check
            )
            _record_outcomes(summary, outcomes, publish_started)
            _check_outcomes(settings, outcomes)
            done(f"{outcomes.scores:,} scores, {outcomes.dead_letters:,} dead letters")


def _service(action: Callable[[], _T]) -> _T:
    """Run a service step, turning its failure into the stage's one-line reason."""
    try:
        return action()
    except ServiceError as exc:
        where = f" (log: {exc.log_path})" if exc.log_path else ""
        raise DemoError(f"{exc}{where}") from exc


def _record_outcomes(summary: Summary, outcomes: Outcomes, started: float) -> None:
    summary.scores = outcomes.scores
    summary.dead_letters = outcomes.dead_letters
    summary.duplicates = outcomes.duplicates
    if outcomes.scores:
        summary.predicted_default_rate = round(outcomes.predicted_default / outcomes.scores, 4)
    if outcomes.last_at is not None:
        summary.end_to_end_s = round(outcomes.last_at - started, 3)
        summary.throughput_per_s = round(outcomes.total / max(summary.end_to_end_s, 1e-3), 1)


def _check_outcomes(settings: DemoSettings, outcomes: Outcomes) -> None:
    if outcomes.duplicates:
        raise DemoError(f"{outcomes.duplicates} applications were scored more than once")
    if outcomes.unreadable:
        raise DemoError(f"{outcomes.unreadable} records on {SCORES_TOPIC} were not scores")
    if outcomes.total < settings.count:
        raise DemoError(
            f"only {outcomes.total:,} of {settings.count:,} outcomes arrived within "
            f"{settings.timeout_s:g}s ({outcomes.scores:,} scores, "
            f"{outcomes.dead_letters:,} dead letters)"
        )


def _stop_all(run: _Run, console: Console) -> list[str]:
    """Stop the worker, the broker and MLflow (whichever were started); the problems met."""
    problems: list[str] = []
    steps: list[tuple[str, Callable[[], object]]] = []
    if run.worker is not None:
        steps.append(("the worker", run.worker.terminate))
    if run.broker is not None:
        steps.append(("Kafka", run.broker.stop))
    if run.mlflow is not None:
        steps.append(("MLflow", run.mlflow.stop))
    if not steps:
        return problems
    with console.status("Stopping " + ", ".join(name for name, _ in steps) + "…"):
        for name, stop in steps:
            try:
                stop()
            except (ServiceError, OSError) as exc:
                problems.append(f"could not stop {name}: {exc}")
    if not problems:
        console.print("[green]✓[/] stopped " + ", ".join(name for name, _ in steps))
    return problems


def _write_services(run: _Run, summary: Summary) -> Path:
    path = run.directory / SERVICES_FILE
    services = {
        "worker_pid": summary.pids.get("worker"),
        "mlflow_pid": summary.pids.get("mlflow"),
        "kafka_dir": summary.kafka_dir,
        "mlflow_url": summary.mlflow_url,
        "kafka_bootstrap": summary.kafka_bootstrap,
    }
    path.write_text(json.dumps(services, indent=2) + "\n", encoding="utf-8")
    return path


# --- output -------------------------------------------------------------------------------


def _render(console: Console, summary: Summary) -> None:
    table = Table(box=box.SIMPLE_HEAD, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    table.add_row(
        "published",
        f"{summary.published:,} applications in {summary.publish_s or 0:.2f} s",
    )
    table.add_row(
        "outcomes",
        f"{summary.scores:,} scores, {summary.dead_letters:,} dead letters, "
        f"{summary.duplicates:,} duplicates",
    )
    if summary.end_to_end_s is not None:
        table.add_row(
            "end to end",
            f"{summary.end_to_end_s:.2f} s from the first publish to the last score "
            f"({summary.throughput_per_s:,.0f} applications/s)",
        )
    if summary.predicted_default_rate is not None:
        threshold = f" (probability ≥ {summary.champion.threshold:.3f})" if summary.champion else ""
        table.add_row(
            "predicted default", f"{summary.predicted_default_rate:.1%} of applications{threshold}"
        )
    if summary.champion is not None:
        c = summary.champion
        table.add_row("champion", f"{c.name} version {c.version} ({c.family})")
        table.add_row(
            "its metrics",
            f"ROC-AUC {_fmt(c.roc_auc)}, expected cost {_fmt(c.expected_cost)} per application, "
            f"threshold {c.threshold:.3f}",
        )
    if summary.mlflow_url is not None:
        note = "" if summary.kept_running else " (stopped with the demo: --keep-running keeps it)"
        table.add_row("MLflow UI", f"{summary.mlflow_url}{note}")
    table.add_row("run directory", _relative(Path(summary.run_dir)))
    table.add_row("total time", f"{summary.total_s or 0:.0f} s")
    console.print(table)


def _render_keep_running(console: Console, run: _Run, services: Path) -> None:
    worker = f" (metrics: {run.worker.url}/metrics)" if run.worker else ""
    console.print(f"Kafka, MLflow and the worker are still running{worker}. Stop them with:")
    python = _relative(Path(sys.executable))
    console.print(f"  {python} -m scripts.demo stop {_relative(run.directory)}")
    console.print(f"  [dim](it reads {escape(_relative(services))})[/]")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _relative(path: Path) -> str:
    """``path`` relative to the working directory when it lies inside it (symlinks kept)."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


# --- command line ---------------------------------------------------------------------------

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    help="The main job end to end on this machine: Kafka, MLflow, training, the worker, "
    "1,000 applications scored; then everything stopped.",
)


@app.callback(invoke_without_command=True)
def demo_command(
    ctx: typer.Context,
    count: Annotated[
        int | None, typer.Option(help="applications to publish (default 1000)")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="dataset CSV (env RUMOS_DATA; default data/credit_default.csv)"),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(help="seconds to wait for every outcome once publishing starts (120)"),
    ] = None,
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="leave Kafka, MLflow and the worker up")
    ] = False,
    summary_json: Annotated[
        Path | None, typer.Option(help="also write the summary (and the pids) to this file")
    ] = None,
    workdir: Annotated[
        Path | None, typer.Option(help="where run directories go (default .cache/demo)")
    ] = None,
) -> None:
    """Run the demo: every stage shown, a summary at the end, everything stopped after."""
    if ctx.invoked_subcommand is not None:
        return
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    overrides: dict[str, Any] = {
        "count": count,
        "data": data,
        "timeout_s": timeout,
        "summary_json": summary_json,
        "workdir": workdir,
    }
    try:
        settings = DemoSettings(
            keep_running=keep_running, **{k: v for k, v in overrides.items() if v is not None}
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        err.print(f"[red]demo: invalid options:[/] {escape(problems)}")
        raise typer.Exit(EXIT_USAGE) from exc
    raise typer.Exit(run_demo(settings, Console(highlight=False), err))


@app.command("stop")
def stop_command(
    run_dir: Annotated[Path, typer.Argument(help="run directory a --keep-running demo printed")],
) -> None:
    """Stop the services a demo run with --keep-running left up: worker, Kafka, MLflow."""
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    try:
        services = json.loads((run_dir / SERVICES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        err.print(f"[red]demo stop:[/] cannot read {run_dir / SERVICES_FILE}: {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from exc
    try:
        if services.get("worker_pid"):
            stop_detached(services["worker_pid"], marker=_WORKER_MARKER, group=False)
        if services.get("kafka_dir"):
            LocalBroker(Path(services["kafka_dir"])).stop()
        if services.get("mlflow_pid"):
            stop_detached(services["mlflow_pid"], marker=_MLFLOW_MARKER, group=True)
    except ServiceError as exc:
        err.print(f"[red]demo stop:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_FAILED) from exc
    Console(highlight=False).print(f"stopped the services of {run_dir}")


def run_demo(settings: DemoSettings, console: Console, err: Console) -> int:
    """Run the demo with ``settings``; returns the exit code. Installs signal handlers."""
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run = _Run(directory=(settings.workdir / f"{stamp}-{os.getpid()}").resolve())
    summary = Summary(run_dir=str(run.directory), count=settings.count)
    guard = _SignalGuard(console)
    stages = _Stages(console, summary, guard)
    guard.install()
    _quiet_libraries()
    code = 0
    try:
        _run_stages(settings, run, summary, stages, console)
        guard.check()
        summary.ok = True
    except (DemoError, Interrupted, Exception) as exc:
        if guard.pending is not None:  # whatever a library turned the signal into
            name = signal.Signals(guard.pending).name
            summary.failure, code = f"interrupted by {name} ({stages.current})", 128 + guard.pending
        elif isinstance(exc, DemoError):
            stage = f"{stages.current}: " if stages.current else ""
            summary.failure, code = f"{stage}{exc}", EXIT_FAILED
        else:
            raise  # a bug: the traceback matters (the services are still stopped)
    finally:
        guard.stopping = True
        keep = summary.ok and settings.keep_running
        problems = [] if keep else _stop_all(run, console)
        if problems and code == 0:
            summary.ok, summary.failure, code = False, "; ".join(problems), EXIT_FAILED
        summary.kept_running = keep
        summary.total_s = round(time.monotonic() - started, 1)
        if summary.ok:
            _render(console, summary)
        if keep:
            _render_keep_running(console, run, _write_services(run, summary))
        if settings.summary_json is not None:
            settings.summary_json.write_text(
                json.dumps(asdict(summary), indent=2) + "\n", encoding="utf-8"
            )
    if summary.failure is not None:
        err.print(f"[red]demo failed:[/] {escape(summary.failure)}")
    return code


def _quiet_libraries() -> None:
    """MLflow's run links repeat the summary's MLflow UI line; librdkafka retries connections
    by itself and the demo reports its real failures."""
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    logging.getLogger(LIBRDKAFKA_LOGGER).setLevel(logging.CRITICAL)


def main() -> None:
    """Entry point of ``python -m scripts.demo``."""
    app()


if __name__ == "__main__":
    main()
