"""``python -m scripts.demo`` (``make demo``): the main job end to end on this machine, no Docker.

Each service joins one ``ExitStack`` as it starts, so whatever ends the story (success, a failed
stage, Ctrl-C, or SIGTERM mapped to ``KeyboardInterrupt``) stops them in reverse order. Exit
codes: 0 done; 1 a stage failed (one line on stderr says why); 2 bad options; 130 or 143
interrupted by SIGINT or SIGTERM.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
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
from devstack import DevstackError
from monitor.settings import Settings as MonitorSettings
from producer import ProducerError
from producer.kafka import LIBRDKAFKA_LOGGER, consumer_config

# The monitor's topics besides the worker's (devstack.ScorerTopics), by partitions.
MONITOR_TOPICS: Final = {
    topics.SHADOW_SCORES_TOPIC: 3,
    topics.OUTCOMES_TOPIC: 3,
    topics.OUTCOMES_DEAD_LETTER_TOPIC: 1,
    topics.ALERTS_TOPIC: 1,
}
SCENARIO_BATCH: Final = 500  # applications in each scenario batch, and the monitor's PSI window
DRIFT_FACTOR: Final = 4  # the drifted batch's credit limits, times the dataset's
WAIT_S: Final = 180.0  # for the outcomes, the monitor: seconds when quiet, minutes when loaded
DATA: Final = devstack.ROOT / "data" / "credit_default.csv"
WORKDIR: Final = devstack.ROOT / ".cache" / "demo"

console = Console(highlight=False)
_signals: list[signal.Signals] = []  # the signal that interrupted the story, once one has


class DemoError(Exception):
    """A stage of the demo failed; the message says why in one line."""


@contextmanager
def stage(title: str) -> Iterator[list[str]]:
    """A spinner, then ✓ and the last line the body appended, or ✗ and ``title`` noted on the
    exception. A signal that a library swallowed still ends the story."""
    started, lines = time.monotonic(), [title]
    try:
        with console.status(f"{escape(title)}…"):
            yield lines
        if _signals:
            raise KeyboardInterrupt
    except BaseException as exc:
        console.print(f"[red]✗[/] {escape(title)}")
        exc.add_note(title)
        raise
    console.print(f"[green]✓[/] {escape(lines[-1])} [dim]· {time.monotonic() - started:.1f} s[/]")


def tell_story(
    data: Path, count: int, run_dir: Path, services: ExitStack, summary: dict[str, Any]
) -> None:
    """Every step, in order and in a stage (only the stops run outside one); each service joins
    ``services`` as it is launched, what the run did joins ``summary``."""
    with stage("Checking the data") as done:
        if not data.is_file():
            hint = "scripts/bootstrap links data/credit_default.csv from ../shared/data"
            raise DemoError(f"no dataset at {data}: pass --data or set RUMOS_DATA ({hint})")
        valid = (r for r in producer.read_csv_applications(data) if isinstance(r, LoanApplication))
        loaded = list(itertools.islice(valid, wanted := count + 2 * SCENARIO_BATCH))
        if len(loaded) < wanted:
            raise DemoError(f"{data} has {len(loaded)} valid applications, not {wanted}")
        done.append(f"{count:,} applications from {data}, {2 * SCENARIO_BATCH:,} more")

    with stage("Starting Kafka (Maven fetches it once), its topics, MLflow (accounts)") as done:
        run_dir.mkdir(parents=True, exist_ok=True)
        broker = devstack.LocalBroker(run_dir / "kafka")  # stop() needs only its directory
        services.callback(_stop, "Kafka", broker.stop)
        summary["kafka_dir"], servers = str(broker.directory), broker.bootstrap_servers
        broker.start()
        summary["pids"]["broker"] = broker.pid or 0
        devstack.ScorerTopics().create(servers, partitions=3)  # the contract's names
        devstack.create_topics(servers, MONITOR_TOPICS)
        passwords = devstack.champion.new_passwords()
        admin, admin_file = passwords[ADMIN_ACCOUNT], run_dir / "mlflow-admin-password"
        admin_file.touch(mode=0o600)  # for the UI of a --keep-running demo
        admin_file.write_text(admin + "\n", encoding="utf-8")
        mlflow = devstack.MlflowServer.start(run_dir / "mlflow", admin_password=admin)
        services.callback(_stop, "MLflow", mlflow.stop)
        summary["mlflow_url"], summary["pids"]["mlflow"] = mlflow.url, mlflow.pid
        devstack.champion.provision(mlflow.url, passwords)
        done.append(f"Kafka {servers} (pid {broker.pid}), MLflow {mlflow.url} (pid {mlflow.pid})")

    with stage("Training in quick mode, signing every version") as done:
        trainer = (TRAINER_ACCOUNT, passwords[TRAINER_ACCOUNT])
        trained = devstack.champion.train_signed_champion(
            mlflow.url, data, run_dir / "model-signing", console=console, account=trainer
        )
        champion, challenger = trained.champion, devstack.champion.name_shadow_challenger(trained)
        if challenger is None:
            raise DemoError("training left no other candidate within the latency budget")
        summary["challenger"] = {"version": challenger.version, "family": challenger.family}
        chosen = [f"version {c.version} ({c.family})" for c in (champion, challenger)]
        done.append(f"champion: {chosen[0]}, challenger: {chosen[1]}")

    with stage("Starting the worker, the challenger in its shadow, and the monitor") as done:
        env = devstack.worker_env(
            kafka_bootstrap_servers=servers,
            mlflow_tracking_uri=mlflow.url,
            model_cache_dir=run_dir / "model-cache",
            model_signing_public_key=trained.public_key,
            mlflow_tracking_username=SCORER_ACCOUNT,
            mlflow_tracking_password=passwords[SCORER_ACCOUNT],
            shadow_alias=SHADOW_ALIAS,
        )
        worker = devstack.WorkerProcess(env, run_dir / "worker.log")
        services.callback(_stop, "the worker", worker.terminate)
        summary["pids"]["worker"] = worker.pid
        worker.wait_ready()
        model = worker.get("/model")[1]  # the champion alias, loaded and vetted
        summary["champion"] = {"name": model["name"], "threshold": model["threshold"]}
        for key in ("version", "family", "roc_auc", "expected_cost"):
            summary["champion"][key] = getattr(champion, key)
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
        summary["pids"]["monitor"] = monitor.pid
        serving = f"serving {model['name']} version {model['version']}"
        done.append(f"worker {worker.url} (pid {worker.pid}) {serving}; monitor pid {monitor.pid}")

    with stage(f"Publishing {count:,} applications, following their outcomes") as done:
        kafka, published_at = producer.Settings(kafka_bootstrap_servers=servers), datetime.now(UTC)
        summary["published"] = _publish(kafka, loaded[:count], topics.APPLICATIONS_TOPIC)
        received: list[producer.ReceivedScore] = []
        followed = _follow(kafka, count, received.append)  # read_committed
        scores = {r.score.application_id: r.score for r in received}.values()
        duplicates, dead_letters = len(received) - len(scores), followed.dead_letters
        summary.update(scores=len(scores), dead_letters=dead_letters, duplicates=duplicates)
        if duplicates or followed.invalid:
            raise DemoError(f"{duplicates} duplicate scores, {followed.invalid} not scores")
        flagged = sum(score.predicted_default for score in scores) / len(scores)
        # To the worker's scored_at: the follower joins its group only after publishing.
        last = (max(score.scored_at for score in scores) - published_at).total_seconds()
        summary.update(predicted_default_rate=flagged, end_to_end_s=last)
        done.append(
            f"{len(scores):,} scores, {dead_letters:,} dead letters, 0 duplicates; the last "
            f"{last:.2f} s after the first publish; {flagged:.1%} flagged "
            f"(≥ {model['threshold']:.3f})"
        )

    with stage(f"Publishing {SCENARIO_BATCH:,} more, credit limits x{DRIFT_FACTOR}") as done:
        drifted = loaded[count : count + SCENARIO_BATCH]
        changed = [a.model_copy(update={"limit_bal": a.limit_bal * DRIFT_FACTOR}) for a in drifted]
        _publish(kafka, changed, topics.APPLICATIONS_TOPIC)
        _follow(kafka, count + SCENARIO_BATCH)
        monitor.wait_caught_up(WAIT_S)
        drift = summary["drift_alerts"] = {}  # PSI by subject, from the alerts' one partition
        group = devstack.unique_name("demo-alerts")
        config = consumer_config(kafka, group_id=group, from_beginning=True, commit=False)
        with closing(Consumer({**config, "enable.partition.eof": True})) as reader:
            reader.assign([TopicPartition(topics.ALERTS_TOPIC, 0, OFFSET_BEGINNING)])
            while (message := reader.poll(WAIT_S)) and message.error() is None:  # to its end
                alert = ModelAlert.model_validate_json(message.value() or b"")
                if alert.kind is AlertKind.PSI:
                    drift[alert.subject] = alert.value
                    console.print(
                        f"  drift alert: PSI of {alert.subject} {alert.value:.2f} > "
                        f"{alert.limit:g} over the last {alert.window_rows:,} applications"
                    )
        if not drift:
            raise DemoError(f"the monitor raised no drift alert (log: {monitor.log_path})")
        done.append(f"{len(drift)} drift alert(s) on {topics.ALERTS_TOPIC}")

    with stage(f"Publishing {SCENARIO_BATCH:,} applications, then every outcome") as done:
        _publish(kafka, loaded[-SCENARIO_BATCH:], topics.APPLICATIONS_TOPIC)
        ids = {application.application_id for application in loaded}
        outcomes = producer.read_csv_outcomes(data, observed_on=published_at.date())
        labels = [o for o in outcomes if isinstance(o, LoanOutcome) and o.application_id in ids]
        _publish(kafka, labels, topics.OUTCOMES_TOPIC)
        _follow(kafka, len(loaded))
        monitor.wait_caught_up(WAIT_S)
        metrics = monitor.metrics()
        paired = summary["paired_outcomes"] = int(metrics.get("monitor_shadow_paired_rows", 0))
        auc = summary["live_roc_auc"] = {  # by role, on the same applications
            role: metrics.get(f'monitor_shadow_roc_auc{{role="{role}"}}', float("nan"))
            for role in ("champion", "challenger")
        }
        aucs = ", ".join(f"{role} {value:.3f}" for role, value in auc.items())
        done.append(f"live ROC-AUC on the same {paired:,} applications: {aucs}")

    with stage("Rendering the monitor's report (python -m monitor report)") as done:
        summary["report"] = str(monitor.report(run_dir / "monitor-report.png"))
        done.append(f"report written to {summary['report']}")


def _publish(kafka: producer.Settings, records: list[Any], topic: str) -> int:
    """Publish every one of ``records`` to ``topic`` and say how fast, or raise ``DemoError``."""
    report = producer.publish(records, producer=producer.create_producer(kafka), topic=topic)
    if report.delivered != len(records):
        failures = dict(report.failures)
        raise DemoError(f"published {report.delivered} of {len(records)} to {topic}: {failures}")
    console.print(f"  published {report.delivered:,} to {topic} ({report.throughput:,.0f}/s)")
    return report.delivered


def _follow(
    kafka: producer.Settings, count: int, sink: Callable[[Any], None] = lambda _: None
) -> producer.FollowReport:
    """Committed scores to ``sink`` from the beginning until ``count`` have an outcome, or fail."""
    group = devstack.unique_name("demo-follow")
    consumer = producer.create_consumer(kafka, group_id=group, from_beginning=True, commit=False)
    with closing(consumer):
        report = producer.follow_scores(
            consumer, sink=sink, dead_letters=lambda _: None, count=count, timeout_s=WAIT_S
        )
    if report.stopped != "count":  # "timeout", or "interrupted" (told as such by demo)
        got = report.received + report.dead_letters
        raise DemoError(f"only {got:,} of {count:,} outcomes within {WAIT_S:.0f} s")
    return report


def _interrupt(signum: int, _frame: object) -> None:
    """SIGINT and SIGTERM alike unwind the story as Ctrl-C does."""
    _signals.append(signal.Signals(signum))
    raise KeyboardInterrupt


def _stop(name: str, stop: Callable[[], object]) -> None:
    """Stop one service, ignoring signals from then on: a second Ctrl-C must not leave the rest."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    with console.status(f"Stopping {name}…"):
        stop()
    console.print(f"[green]✓[/] stopped {name}")


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def demo(
    count: Annotated[int, typer.Option(min=1, help="Applications to publish.")] = 1_000,
    data: Annotated[Path, typer.Option(envvar="RUMOS_DATA", help="The dataset.")] = DATA,
    keep_running: Annotated[bool, typer.Option("--keep-running", help="Leave it all up.")] = False,
    summary_json: Annotated[Path | None, typer.Option(help="Write the summary JSON here.")] = None,
    workdir: Annotated[Path, typer.Option(help="Where run directories go.")] = WORKDIR,
) -> None:
    """The main job end to end on this machine: Kafka, MLflow, training, the worker, COUNT
    applications scored, the monitor's scenario; then all stopped, unless --keep-running."""
    started = time.monotonic()
    run_dir = (workdir / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}").resolve()
    summary: dict[str, Any] = {"run_dir": str(run_dir), "ok": False, "failure": None}
    summary.update(pids={}, kafka_dir=None, mlflow_url=None, kept_running=False)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    # MLflow's run links repeat its URL; librdkafka's retries: the stages report what matters.
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    logging.getLogger(LIBRDKAFKA_LOGGER).setLevel(logging.CRITICAL)
    try:
        with ExitStack() as services:
            tell_story(data, count, run_dir, services, summary)
            if keep_running:
                services.pop_all()
        summary.update(ok=True, kept_running=keep_running)
    except BaseException as exc:
        if not _signals and not isinstance(exc, DemoError | DevstackError | ProducerError):
            raise  # a bug: its traceback matters (the services were still stopped)
        where = "".join(getattr(exc, "__notes__", [])[:1]) or "stopping the services"
        log = getattr(exc, "log_path", None)
        failure = f"interrupted by {_signals[0].name} ({where})" if _signals else None
        summary["failure"] = failure or f"{where}: {exc}" + (f" (log: {log})" if log else "")
        print(f"demo failed: {summary['failure']}", file=sys.stderr)
        raise typer.Exit(128 + _signals[0] if _signals else EXIT_FAILED) from None
    finally:
        if summary_json is not None:
            summary_json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    console.print(f"Done in {time.monotonic() - started:.0f} s; the run: {run_dir}", markup=False)
    if not keep_running:
        console.print("Everything is stopped: --keep-running leaves it up, MLflow UI too.")
        return
    pids, kafka_local = summary["pids"], devstack.ROOT / "scripts" / "kafka-local"
    console.print(f"MLflow UI on {summary['mlflow_url']}: admin, password in mlflow-admin-password")
    console.print("Kafka, MLflow, the worker and the monitor are still running. Stop them with:")
    kill = f"kill {pids['monitor']} {pids['worker']} && kill -- -{pids['mlflow']}"
    kafka = f"{kafka_local} stop --dir {summary['kafka_dir']}"
    console.print(f"  {kill} && {kafka}", soft_wrap=True, markup=False)


if __name__ == "__main__":
    app()
