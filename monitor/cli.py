"""``python -m monitor``: run the monitor until a signal; ``python -m monitor report``: a PNG.

Exit codes: 0 after SIGTERM/SIGINT (the batch in hand is finished first); 1 on a fatal
Kafka, database or profile error (restart it: an unfinished batch is recovered); 2 on
invalid settings.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from prometheus_client import start_http_server
from rich.console import Console

from consumer.errors import TransportError
from contracts.cli import EXIT_FAILED, EXIT_OK, settings_or_exit
from contracts.registry_access import use_credentials
from monitor.errors import MonitorError
from monitor.loop import Monitor
from monitor.measures import measure
from monitor.metrics import Metrics
from monitor.profiles import mlflow_profiles
from monitor.settings import ENV_PREFIX, Settings
from monitor.store import Store
from monitor.transport import KafkaTransport

app = typer.Typer(
    name="monitor",
    help="Watch the champion live: drift, live performance, alerts.",
    add_completion=False,
    pretty_exceptions_enable=False,
)
_err = Console(stderr=True, soft_wrap=True)
_log = logging.getLogger("monitor")


def main() -> None:
    """Entry point of ``python -m monitor``."""
    app()


@app.callback(invoke_without_command=True)
def run_command(context: typer.Context) -> None:
    """Consume predictions, outcomes and applications until SIGTERM or Ctrl-C."""
    if context.invoked_subcommand is not None:
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = settings_or_exit(Settings, ENV_PREFIX)
    use_credentials(settings.tracking_username, settings.tracking_password)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    metrics = Metrics()
    try:
        if settings.metrics_port:
            start_http_server(settings.metrics_port, registry=metrics.registry)
        transport = KafkaTransport(settings)
        try:
            store = Store(settings.database_url)
            profiles = mlflow_profiles(settings.tracking_uri)
            Monitor(settings, transport, store, profiles, metrics).run(stop)
        finally:
            transport.close()
    except (MonitorError, TransportError, OSError) as exc:
        _err.print(f"[red]monitor stopped:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from exc
    raise typer.Exit(EXIT_OK)


@app.command("report")
def report_command(
    output: Annotated[Path, typer.Option(help="Where to write the PNG.")] = Path("monitor.png"),
) -> None:
    """Render PSI per feature, the live calibration curve and the live fairness gaps from the
    monitor's database."""
    # Here, not at the top: matplotlib would sit in the running monitor's memory unused.
    from monitor.report import fairness_line, render_report

    settings = settings_or_exit(Settings, ENV_PREFIX)
    use_credentials(settings.tracking_username, settings.tracking_password)
    try:
        store = Store(settings.database_url)
        profiles = mlflow_profiles(settings.tracking_uri)
        drift, performance, fairness, comparison = measure(store, profiles, settings)
    except MonitorError as exc:
        _err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from exc
    psi = drift.psi if drift else {}
    render_report(
        psi, performance, settings.psi_limit, output, comparison, fairness, settings.fairness_limit
    )
    _err.print(fairness_line(fairness), highlight=False)
    _err.print(f"{performance.rows:,} joined outcomes; report written to {output}", highlight=False)
