"""``python -m scripts.demo`` (``make demo``): the main job end to end on this machine, no Docker.

Kafka and MLflow (accounts as in compose) on free ports; quick training; the worker with a
shadow challenger; the monitor; COUNT applications followed until each has its outcome. Then
the monitor's scenario: credit limits four times the dataset's and the drift alert they raise,
every real outcome, the live ROC-AUC of champion and challenger, the monitor's report.

Every service joins one ``ExitStack`` as it is launched, so whatever ends the story (success,
a failed stage, Ctrl-C, or SIGTERM, mapped to ``KeyboardInterrupt``) stops them in reverse
order. Exit codes: 0 every application had its outcome; 1 a stage failed (its reason in one
line on stderr); 2 bad options; 130 or 143 interrupted by SIGINT or SIGTERM.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, Final

import typer
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from pydantic import SecretStr
from rich.console import Console
from rich.markup import escape

import devstack
import devstack.champion
import producer
from contracts import LoanApplication, topics
from contracts.alert import AlertKind, ModelAlert
from contracts.cli import EXIT_FAILED
from contracts.model_names import SHADOW_ALIAS
from contracts.outcome import LoanOutcome
from contracts.registry_access import ADMIN_ACCOUNT, SCORER_ACCOUNT, TRAINER_ACCOUNT
from contracts.score import LoanScore
from monitor.settings import Settings as MonitorSettings
from producer.kafka import LIBRDKAFKA_LOGGER, consumer_config

TOPICS: Final = devstack.ScorerTopics()  # the contract's names, which the worker reads
# The monitor's topics besides the worker's, by partitions: the contract's names too.
MONITOR_TOPICS: Final = {
    topics.SHADOW_SCORES_TOPIC: 3,
    topics.OUTCOMES_TOPIC: 3,
    topics.OUTCOMES_DEAD_LETTER_TOPIC: 1,
    topics.ALERTS_TOPIC: 1,
}
SCENARIO_BATCH: Final = 500
"""Applications in each batch of the monitor's scenario (drifted, then not), and its PSI
window: once the drifted batch is in, the window holds it alone."""
DRIFT_FACTOR: Final = 4  # the drifted batch's credit limits, times the dataset's
# The monitor takes a few seconds a batch of 2,000 records on a 2-core machine; the margin
# is for a loaded one, as for the outcomes.
MONITOR_TIMEOUT_S: Final = 180.0
# Every outcome must arrive this long after following starts: 1,000 take about a second on a
# 2-core machine (the README's run), so the margin is for a loaded one.
OUTCOMES_TIMEOUT_S: Final = 120.0
DEFAULT_DATA: Final = devstack.ROOT / "data" / "credit_default.csv"
DEFAULT_WORKDIR: Final = devstack.ROOT / ".cache" / "demo"

console = Console(highlight=False)
_err = Console(stderr=True, soft_wrap=True, highlight=False)
_signals: list[signal.Signals] = []  # the signal that interrupted the story, once one has


class DemoError(Exception):
    """A stage of the demo failed; the message says why in one line."""


# What a stage reports in one line; anything else is a bug and keeps its traceback.
_STAGE_FAILURES: Final = (DemoError, devstack.DevstackError, producer.ProducerError)


@dataclass
class Summary:
    """The run's record: printed at the end, and written as JSON by ``--summary-json``."""

    run_dir: str
    ok: bool = False
    failure: str | None = None
    pids: dict[str, int] = field(default_factory=dict)
    kafka_dir: str | None = None
    mlflow_url: str | None = None
    champion: dict[str, Any] = field(default_factory=dict)
    challenger: dict[str, Any] = field(default_factory=dict)
    published: int = 0
    scores: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    predicted_default_rate: float = 0.0
    end_to_end_s: float = 0.0
    drift_alerts: dict[str, float] = field(default_factory=dict)  # PSI by subject
    live_roc_auc: dict[str, float] = field(default_factory=dict)  # by role, same applications
    paired_outcomes: int = 0
    report: str | None = None
    kept_running: bool = False


@contextmanager
def stage(title: str) -> Iterator[list[str]]:
    """A spinner with ``title`` while the body runs, then ✓ and the last line the body
    appended; on failure ✗, and ``title`` noted on the exception for the one-line reason."""
    started, lines = time.monotonic(), [title]
    try:
        with console.status(f"{escape(title)}…"):
            yield lines
        if _signals:  # the KeyboardInterrupt was swallowed (in a finalizer, by a library)
            raise KeyboardInterrupt
    except BaseException as exc:
        console.print(f"[red]✗[/] {escape(title)}")
        exc.add_note(title)
        raise
    console.print(f"[green]✓[/] {escape(lines[-1])} [dim]· {time.monotonic() - started:.1f} s[/]")


def tell_story(
    data: Path, count: int, run_dir: Path, services: ExitStack, summary: Summary
) -> None:
    """Every stage, in order; each service joins ``services`` as it is launched."""
    with stage("Checking the data") as done:
        loaded = _load_applications(data, count + 2 * SCENARIO_BATCH)
        applications, scenario = loaded[:count], loaded[count:]
        done.append(f"{count:,} applications from {_relative(data)}, {len(scenario):,} more")

    run_dir.mkdir(parents=True, exist_ok=True)
    broker = devstack.LocalBroker(run_dir / "kafka")  # stop() needs only its directory
    services.callback(_stop, "Kafka", broker.stop)
    summary.kafka_dir, servers = str(broker.directory), broker.bootstrap_servers
    with stage("Starting Kafka (scripts/kafka-local; Maven fetches it once)") as done:
        broker.start()
        summary.pids["broker"] = broker.pid or 0
        done.append(f"Kafka on {servers} (pid {broker.pid})")

    with stage("Starting MLflow (SQLite, proxied artifacts, basic-auth accounts)") as done:
        passwords = devstack.champion.new_passwords()
        admin, admin_file = passwords[ADMIN_ACCOUNT], run_dir / "mlflow-admin-password"
        admin_file.touch(mode=0o600)  # for the UI of a --keep-running demo
        admin_file.write_text(admin + "\n", encoding="utf-8")
        mlflow = devstack.MlflowServer.start(run_dir / "mlflow", admin_password=admin)
        services.callback(_stop, "MLflow", mlflow.stop)
        summary.mlflow_url, summary.pids["mlflow"] = mlflow.url, mlflow.pid
        devstack.champion.provision(mlflow.url, passwords)
        done.append(f"MLflow on {mlflow.url} (pid {mlflow.pid}), accounts trainer and scorer")

    with stage("Creating the worker's and the monitor's topics") as done:
        TOPICS.create(servers, partitions=3)
        devstack.create_topics(servers, MONITOR_TOPICS)
        done.append(f"topics {', '.join([*TOPICS.names, *MONITOR_TOPICS])}")

    with stage("Training in quick mode, signing every version") as done:
        trainer = (TRAINER_ACCOUNT, passwords[TRAINER_ACCOUNT])
        trained = devstack.champion.train_signed_champion(
            mlflow.url, data, run_dir / "model-signing", console=console, account=trainer
        )
        champion, challenger = trained.champion, devstack.champion.name_shadow_challenger(trained)
        if challenger is None:
            raise DemoError("training left no other candidate within the latency budget")
        summary.challenger = {"version": challenger.version, "family": str(challenger.family)}
        done.append(
            f"champion: version {champion.version} ({champion.family}), "
            f"challenger: version {challenger.version} ({challenger.family})"
        )

    with stage("Starting the worker (python -m consumer), the challenger in its shadow") as done:
        env = devstack.worker_env(
            kafka_bootstrap_servers=servers,
            mlflow_tracking_uri=mlflow.url,
            worker_id="demo",
            model_cache_dir=run_dir / "model-cache",
            model_signing_public_key=trained.public_key,
            mlflow_tracking_username=SCORER_ACCOUNT,
            mlflow_tracking_password=passwords[SCORER_ACCOUNT],
            shadow_alias=SHADOW_ALIAS,
        )
        worker = devstack.WorkerProcess(env, run_dir / "worker.log")
        services.callback(_stop, "the worker", worker.terminate)
        summary.pids["worker"] = worker.pid
        worker.wait_ready()
        status, model = worker.get("/model")
        if status != 200 or str(model["version"]) != champion.version:
            raise DemoError(f"the worker serves {model}, not version {champion.version}")
        summary.champion = {
            "name": model["name"],
            "version": champion.version,
            "family": str(champion.family),
            "roc_auc": champion.roc_auc,
            "expected_cost": champion.expected_cost,
            "threshold": float(model["threshold"]),
        }
        serving = f"serving {model['name']} version {champion.version}"
        done.append(f"worker ready on {worker.url} (pid {worker.pid}), {serving}")

    with stage("Starting the monitor (python -m monitor, SQLite in the run directory)") as done:
        watching = MonitorSettings(
            kafka_bootstrap_servers=servers,
            tracking_uri=mlflow.url,
            tracking_username=SCORER_ACCOUNT,
            tracking_password=SecretStr(passwords[SCORER_ACCOUNT]),
            database_url=f"sqlite:///{run_dir / 'monitor.db'}",
            window_rows=SCENARIO_BATCH,
            min_window_rows=SCENARIO_BATCH // 2,
            metrics_port=devstack.free_port(),
        )
        monitor = devstack.MonitorProcess(watching, run_dir / "monitor.log")
        services.callback(_stop, "the monitor", monitor.terminate)
        summary.pids["monitor"] = monitor.pid
        done.append(f"monitor started (pid {monitor.pid}), its database monitor.db")

    kafka = producer.Settings(kafka_bootstrap_servers=servers)
    published_at = datetime.now(UTC)
    with stage(f"Publishing {count:,} applications") as done:
        report = _publish(kafka, applications, topics.APPLICATIONS_TOPIC)
        summary.published = report.delivered
        done.append(f"published {report.delivered:,} ({report.throughput:,.0f}/s)")

    with stage("Following the outcomes (read_committed)") as done:
        scores, followed = _follow(kafka, count)
        summary.scores = len({score.application_id for score in scores})
        summary.dead_letters = followed.dead_letters
        summary.duplicates = len(scores) - summary.scores
        if summary.duplicates or followed.invalid:
            raise DemoError(f"{summary.duplicates} duplicate scores, {followed.invalid} not scores")
        summary.predicted_default_rate = sum(s.predicted_default for s in scores) / len(scores)
        # To the worker's scored_at, not to when the score was read: the follower joins its
        # group only after publishing, which would add its join.
        last = max(score.scored_at for score in scores)
        summary.end_to_end_s = round((last - published_at).total_seconds(), 3)
        done.append(
            f"{summary.scores:,} scores, {summary.dead_letters:,} dead letters, "
            f"{summary.duplicates:,} duplicates; the last {summary.end_to_end_s:.2f} s after the "
            f"first publish; {summary.predicted_default_rate:.1%} flagged "
            f"(≥ {summary.champion['threshold']:.3f})"
        )

    drifted, plain, every = scenario[:SCENARIO_BATCH], scenario[SCENARIO_BATCH:], loaded
    with stage(f"Publishing {len(drifted):,} applications, credit limits x{DRIFT_FACTOR}") as done:
        changed = [a.model_copy(update={"limit_bal": a.limit_bal * DRIFT_FACTOR}) for a in drifted]
        _publish(kafka, changed, topics.APPLICATIONS_TOPIC)
        _follow(kafka, count + len(drifted))
        monitor.wait_caught_up(MONITOR_TIMEOUT_S)
        for alert in _alerts(kafka):
            if alert.kind is AlertKind.PSI:
                summary.drift_alerts[alert.subject] = alert.value
                console.print(
                    f"  drift alert: PSI of {alert.subject} {alert.value:.2f} > {alert.limit:g} "
                    f"over the last {alert.window_rows:,} applications"
                )
        if not summary.drift_alerts:
            raise DemoError(f"the monitor raised no drift alert (log: {monitor.log_path})")
        done.append(f"{len(summary.drift_alerts)} drift alert(s) on {topics.ALERTS_TOPIC}")

    with stage(f"Publishing {len(plain):,} applications, then every outcome") as done:
        _publish(kafka, plain, topics.APPLICATIONS_TOPIC)
        ids = {application.application_id for application in every}
        outcomes = producer.read_csv_outcomes(data, observed_on=date.today())
        labels = [o for o in outcomes if isinstance(o, LoanOutcome) and o.application_id in ids]
        _publish(kafka, labels, topics.OUTCOMES_TOPIC)
        _follow(kafka, len(every))
        monitor.wait_caught_up(MONITOR_TIMEOUT_S)
        metrics = monitor.metrics()
        summary.paired_outcomes = int(metrics.get("monitor_shadow_paired_rows", 0))
        for role in ("champion", "challenger"):
            auc = metrics.get(f'monitor_shadow_roc_auc{{role="{role}"}}', float("nan"))
            summary.live_roc_auc[role] = auc
        done.append(
            f"live ROC-AUC on the same {summary.paired_outcomes:,} applications: "
            + ", ".join(f"{r} {auc:.3f}" for r, auc in summary.live_roc_auc.items())
        )

    with stage("Rendering the monitor's report (python -m monitor report)") as done:
        summary.report = str(monitor.report(run_dir / "monitor-report.png"))
        done.append(f"report written to {_relative(Path(summary.report))}")


def _load_applications(path: Path, count: int) -> list[LoanApplication]:
    """The first ``count`` valid applications of the dataset (invalid rows are skipped)."""
    if not path.is_file():
        raise DemoError(
            f"no dataset at {path}: pass --data or set RUMOS_DATA "
            "(scripts/bootstrap links data/credit_default.csv from ../shared/data)"
        )
    valid = (r for r in producer.read_csv_applications(path) if isinstance(r, LoanApplication))
    applications = list(itertools.islice(valid, count))
    if len(applications) < count:
        raise DemoError(f"{path} has {len(applications)} valid applications, not {count}")
    return applications


def _publish(
    settings: producer.Settings, records: Sequence[producer.Publishable], topic: str
) -> producer.PublishReport:
    """Publish every one of ``records`` to ``topic``, or raise ``DemoError``."""
    report = producer.publish(records, producer=producer.create_producer(settings), topic=topic)
    if report.delivered != len(records):
        failures = "; ".join(f"{n} x {reason}" for reason, n in report.failures.items())
        raise DemoError(f"published {report.delivered} of {len(records)} to {topic}: {failures}")
    return report


def _follow(
    settings: producer.Settings, count: int
) -> tuple[list[LoanScore], producer.FollowReport]:
    """A fresh group's committed scores from the beginning (dead letters counted by the
    report) once ``count`` applications have their outcome; ``DemoError`` unless they all
    did within ``OUTCOMES_TIMEOUT_S``."""
    scores: list[LoanScore] = []
    group = devstack.unique_name("demo-follow")
    with closing(
        producer.create_consumer(settings, group_id=group, from_beginning=True, commit=False)
    ) as c:
        report = producer.follow_scores(
            c,
            sink=lambda received: scores.append(received.score),
            dead_letters=lambda _dead_letter: None,  # counted by the report
            count=count,
            timeout_s=OUTCOMES_TIMEOUT_S,
        )
    if report.stopped == "interrupted":
        raise KeyboardInterrupt  # follow_scores ends on it; the demo ends altogether
    if report.stopped == "timeout":
        got = len(scores) + report.dead_letters
        raise DemoError(f"only {got:,} of {count:,} outcomes within {OUTCOMES_TIMEOUT_S:.0f} s")
    return scores, report


def _alerts(settings: producer.Settings) -> list[ModelAlert]:
    """Every committed alert (its topic has one partition), read to its present end."""
    group = devstack.unique_name("demo-alerts")
    config = consumer_config(settings, group_id=group, from_beginning=True, commit=False)
    reader = Consumer({**config, "enable.partition.eof": True})
    reader.assign([TopicPartition(topics.ALERTS_TOPIC, 0, OFFSET_BEGINNING)])
    alerts = []
    with closing(reader):  # ends at the partition's end (an EOF "error"), or after a timeout
        while (message := reader.poll(MONITOR_TIMEOUT_S)) and message.error() is None:
            alerts.append(ModelAlert.model_validate_json(message.value() or b""))
    return alerts


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    """SIGINT and SIGTERM alike unwind the story as Ctrl-C does."""
    _signals.append(signal.Signals(signum))
    raise KeyboardInterrupt


def _stop(name: str, stop: Callable[[], object]) -> None:
    """Stop one service. From the first stop on, signals are ignored: a second Ctrl-C must
    not leave the other services running."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    with console.status(f"Stopping {name}…"):
        try:
            stop()
        except devstack.DevstackError as exc:
            exc.add_note(f"Stopping {name}")
            raise
    console.print(f"[green]✓[/] stopped {name}")


def _failure(exc: BaseException) -> tuple[str, int]:
    """The one-line reason (the stage it happened in, and why) and the exit code."""
    where = "".join(getattr(exc, "__notes__", [])[:1]) or "between stages"
    if _signals:
        return f"interrupted by {_signals[0].name} ({where})", 128 + _signals[0]
    log = getattr(exc, "log_path", None)
    return f"{where}: {exc}" + (f" (log: {_relative(log)})" if log else ""), EXIT_FAILED


def _relative(path: Path) -> str:
    """``path`` relative to the working directory when it lies inside it."""
    absolute, here = Path(os.path.abspath(path)), Path.cwd()
    return str(absolute.relative_to(here) if absolute.is_relative_to(here) else absolute)


def _print_where(summary: Summary, total_s: float) -> None:
    """Where to look next, once the stages have said what happened; with ``--keep-running``
    the command that stops what still runs (MLflow's group holds its uvicorn workers)."""
    ui = "log in as admin: mlflow-admin-password in the run directory"
    ui = ui if summary.kept_running else "stopped with the demo: --keep-running keeps it"
    for label, value in (
        ("MLflow UI", f"{summary.mlflow_url} ({ui})"),
        ("run directory", _relative(Path(summary.run_dir))),
        ("total time", f"{total_s:.0f} s"),
    ):
        console.print(f" [bold]{label:<15}[/]{escape(value)}")
    if summary.kept_running:
        pids, kafka_local = summary.pids, _relative(devstack.ROOT / "scripts" / "kafka-local")
        console.print(
            "Kafka, MLflow, the worker and the monitor are still running. Stop them with:"
        )
        command = (
            f"kill {pids['monitor']} {pids['worker']} && kill -- -{pids['mlflow']} "
            f"&& {kafka_local} stop --dir {_relative(Path(summary.kafka_dir or ''))}"
        )
        console.print(f"  {escape(command)}", soft_wrap=True)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def demo(
    count: Annotated[int, typer.Option(min=1, help="Applications to publish.")] = 1_000,
    data: Annotated[Path, typer.Option(envvar="RUMOS_DATA", help="The dataset.")] = DEFAULT_DATA,
    keep_running: Annotated[
        bool,
        typer.Option("--keep-running", help="Leave Kafka, MLflow, the worker and the monitor up."),
    ] = False,
    summary_json: Annotated[
        Path | None, typer.Option(help="Also write the summary (with the pids) to this file.")
    ] = None,
    workdir: Annotated[Path, typer.Option(help="Where run directories go.")] = DEFAULT_WORKDIR,
) -> None:
    """The main job end to end on this machine: Kafka, MLflow, training, the worker, COUNT
    applications scored, the monitor watching them and a scenario of its own; then
    everything stopped (unless --keep-running)."""
    started = time.monotonic()
    run_dir = (workdir / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}").resolve()
    summary = Summary(run_dir=str(run_dir))
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    # MLflow's run links would repeat the summary's MLflow line; librdkafka's connection
    # retries are its own business, and the stages report the failures that matter.
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    logging.getLogger(LIBRDKAFKA_LOGGER).setLevel(logging.CRITICAL)
    try:
        with ExitStack() as services:
            tell_story(data, count, run_dir, services, summary)
            if keep_running:
                services.pop_all()
        summary.ok, summary.kept_running = True, keep_running
    except BaseException as exc:
        if not _signals and not isinstance(exc, _STAGE_FAILURES):
            raise  # a bug: its traceback matters (the services were still stopped)
        summary.failure, code = _failure(exc)
        _err.print(f"[red]demo failed:[/] {escape(summary.failure)}")
        raise typer.Exit(code) from None
    finally:
        if summary_json is not None:
            summary_json.write_text(json.dumps(asdict(summary), indent=2) + "\n", encoding="utf-8")
    _print_where(summary, time.monotonic() - started)


if __name__ == "__main__":
    app()
