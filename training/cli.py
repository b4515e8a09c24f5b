"""``python -m training``: train (default), ``promote VERSION`` (or ``promote --from-shadow``:
the shadow challenger, when the monitor's evidence shows it cheaper), ``rollback``,
``keygen DIR`` and ``accounts``.

A thin layer over :func:`training.train`, :mod:`training.registry` and
:mod:`training.accounts`: it builds the settings, renders the outcome, and turns the
package's errors into a one-line message and an exit code (2: bad input, unknown or
unverified version, missing key, nothing to roll back, no challenger, an unreadable monitor
database, registry credentials refused; 1: anything else, including a training call that
promoted nothing and a challenger the evidence does not favour).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from contracts.cli import EXIT_FAILED, EXIT_USAGE, settings_or_exit
from contracts.model_names import CHAMPION_ALIAS, FEATURE_POLICY_TAG
from contracts.model_trust import SigningKeyError, keygen, load_public_keys
from contracts.registry_access import SCORER_ACCOUNT, TRAINER_ACCOUNT, use_credentials
from training.accounts import Account, provision_accounts
from training.errors import (
    DatasetError,
    EvidenceError,
    NoPreviousChampionError,
    PolicyError,
    RegistryAccessError,
    TrainingError,
    UnknownVersionError,
    UnverifiedVersionError,
)
from training.evaluation import CostMatrix
from training.policies import POLICIES, promotion_tags
from training.registry import (
    AliasState,
    aliases,
    check_access,
    get_version,
    promote,
    registry_client,
    rollback,
)
from training.results import TrainingReport
from training.settings import (
    ENV_PREFIX,
    AccountsSettings,
    RegistrySettings,
    ShadowPromotionSettings,
    TrainingSettings,
)
from training.shadow import ShadowVerdict, judge, read_evidence
from training.signing import verify_version
from training.trainer import train

_USER_ERRORS = (
    DatasetError,
    EvidenceError,
    RegistryAccessError,
    UnknownVersionError,
    UnverifiedVersionError,
    NoPreviousChampionError,
    PolicyError,
)
_SettingsT = TypeVar(
    "_SettingsT", RegistrySettings, TrainingSettings, ShadowPromotionSettings, AccountsSettings
)
_T = TypeVar("_T")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    help="Train the credit-default candidates and manage the champion alias.",
)

TrackingUri = Annotated[
    str | None,
    typer.Option(help="MLflow tracking URI (env MLFLOW_TRACKING_URI; default sqlite:///mlflow.db)"),
]
ModelName = Annotated[
    str | None, typer.Option(help="registered model (env RUMOS_TRAINING_MODEL_NAME)")
]
CostFn = Annotated[float | None, typer.Option(help="cost of a missed defaulter (default 5)")]
CostFp = Annotated[float | None, typer.Option(help="cost of a good client flagged (default 1)")]


@app.callback(invoke_without_command=True)
def train_command(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option(help="dataset CSV (env RUMOS_DATA; default data/credit_default.csv)"),
    ] = None,
    tracking_uri: TrackingUri = None,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment")] = None,
    model_name: ModelName = None,
    quick: Annotated[
        bool | None, typer.Option("--quick/--full", help="subsample, tiny grids, 3 folds")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="seed of splits, folds and models")] = None,
    cost_fn: CostFn = None,
    cost_fp: CostFp = None,
    latency_budget_us: Annotated[
        float | None,
        typer.Option(help="max batch µs/row of a champion, reasons included (default 20)"),
    ] = None,
    families: Annotated[
        list[str] | None,
        typer.Option(help="families to train, comma-separated or repeated (default: all)"),
    ] = None,
    feature_policy: Annotated[
        str | None,
        typer.Option(
            help=f"fields the models may use: {', '.join(POLICIES)} (default fair-lending)"
        ),
    ] = None,
    fairness_limit: Annotated[
        float | None,
        typer.Option(help="max parity / equalized-odds difference of a champion (default 0.2)"),
    ] = None,
) -> None:
    """Train every candidate family, register each one, and promote the champion."""
    if ctx.invoked_subcommand is not None:
        return
    console = Console(stderr=True, soft_wrap=True)
    settings = _settings(
        TrainingSettings,
        data=data,
        tracking_uri=tracking_uri,
        experiment=experiment,
        model_name=model_name,
        quick=quick,
        seed=seed,
        cost_fn=cost_fn,
        cost_fp=cost_fp,
        latency_budget_us=latency_budget_us,
        families=families,
        feature_policy=feature_policy,
        fairness_limit=fairness_limit,
    )
    report = _run(console, lambda: train(settings, console=console))
    _render_report(Console(soft_wrap=True), report)
    if report.champion is None:
        console.print(
            f"[red]nothing promoted:[/] {escape(report.selection_reason)}", highlight=False
        )
        raise typer.Exit(EXIT_FAILED)


@app.command("promote")
def promote_command(
    version: Annotated[
        str | None, typer.Argument(help="the version to make champion (not with --from-shadow)")
    ] = None,
    tracking_uri: TrackingUri = None,
    model_name: ModelName = None,
    force_research_policy: Annotated[
        bool,
        typer.Option(help="promote a version of a research-only feature policy (recorded)"),
    ] = False,
    from_shadow: Annotated[
        bool,
        typer.Option(
            "--from-shadow",
            help="promote the shadow challenger only if the monitor's joined outcomes show it "
            "cheaper than the champion on the same applications",
        ),
    ] = False,
    min_outcomes: Annotated[
        int | None,
        typer.Option(help="labelled applications scored by both needed (default 1000)"),
    ] = None,
    shadow_alias: Annotated[
        str | None, typer.Option(help="the challenger's alias (default challenger)")
    ] = None,
    monitor_database_url: Annotated[
        str | None,
        typer.Option(
            help="the monitor's database (env MONITOR_DATABASE_URL; sqlite:///monitor.db)"
        ),
    ] = None,
    cost_fn: CostFn = None,
    cost_fp: CostFp = None,
) -> None:
    """Move the champion alias to VERSION once it verifies; the former champion becomes previous.

    VERSION must be signed by a key in RUMOS_TRAINING_SIGNING_PUBLIC_KEY and its files
    must be the ones signed (RUMOS_TRAINING_ALLOW_UNSIGNED_MODELS=true skips the check
    when no key is configured). With --from-shadow, VERSION is the one the shadow alias
    names, promoted only on the monitor's evidence (training.shadow); the verdict is
    printed either way, and a challenger it does not favour exits 1 with no alias moved.
    """
    console = Console(stderr=True, soft_wrap=True)
    if from_shadow == (version is not None):
        console.print("[red]error:[/] give either VERSION or --from-shadow", highlight=False)
        raise typer.Exit(EXIT_USAGE)
    settings = _settings(
        ShadowPromotionSettings,
        tracking_uri=tracking_uri,
        model_name=model_name,
        min_shadow_outcomes=min_outcomes,
        shadow_alias=shadow_alias,
        monitor_database_url=monitor_database_url,
        cost_fn=cost_fn,
        cost_fp=cost_fp,
    )
    client = _client(console, settings)
    verify = _verifier(console, client, settings)

    def _promote() -> AliasState:
        chosen, reason = version, "promoted by hand (CLI)"
        if chosen is None:
            chosen, verdict = _shadow_verdict(client, settings)
            Console(soft_wrap=True).print(
                f"{'promote' if verdict.promote else 'keep the champion'}: "
                f"{escape(verdict.reason)}",
                highlight=False,
            )
            if not verdict.promote:
                raise typer.Exit(EXIT_FAILED)
            reason = f"promoted from shadow evidence: {verdict.reason}"
        found = get_version(client, settings.model_name, chosen)
        tags = promotion_tags(
            found.tags.get(FEATURE_POLICY_TAG), chosen, force=force_research_policy
        )
        state = promote(client, settings.model_name, chosen, reason=reason, verify=verify)
        for key, value in tags.items():  # recorded once the version really is champion
            client.set_model_version_tag(settings.model_name, chosen, key, value)
        return state

    state = _run(console, _promote)
    _render_state(Console(soft_wrap=True), settings.model_name, state)


@app.command("rollback")
def rollback_command(tracking_uri: TrackingUri = None, model_name: ModelName = None) -> None:
    """Swap champion and previous: roll back the last promotion."""
    console = Console(stderr=True, soft_wrap=True)
    settings = _settings(RegistrySettings, tracking_uri=tracking_uri, model_name=model_name)
    client = _client(console, settings)
    state = _run(console, lambda: rollback(client, settings.model_name))
    _render_state(Console(soft_wrap=True), settings.model_name, state)


@app.command("keygen")
def keygen_command(
    directory: Annotated[Path, typer.Argument(help="where to write the key pair")],
) -> None:
    """Write a new Ed25519 model-signing key pair: DIR/model-signing.key (private, mode 600;
    training's RUMOS_TRAINING_SIGNING_KEY) and DIR/model-signing.pub (scorers' and promote's)."""
    console = Console(stderr=True, soft_wrap=True)
    try:
        files = keygen(directory)
    except OSError as exc:
        console.print(f"[red]error:[/] cannot write a key pair in {directory}: {exc}")
        raise typer.Exit(EXIT_USAGE) from exc
    Console(soft_wrap=True).print(f"private key: {files.private}\npublic key: {files.public}")


def _shadow_verdict(client: Any, settings: ShadowPromotionSettings) -> tuple[str, ShadowVerdict]:
    """The version the shadow alias names, and the monitor's evidence's verdict on it."""
    held = aliases(client, settings.model_name)
    challenger, champion = held.get(settings.shadow_alias), held.get(CHAMPION_ALIAS)
    if challenger is None or champion is None:
        missing = settings.shadow_alias if challenger is None else CHAMPION_ALIAS
        raise UnknownVersionError(f"{settings.model_name!r} has no {missing!r} version")
    if challenger == champion:
        return challenger, ShadowVerdict(False, f"version {challenger} is already champion")
    costs = CostMatrix(false_negative=settings.cost_fn, false_positive=settings.cost_fp)
    evidence = read_evidence(settings.monitor_database_url, costs, champion, challenger)
    return challenger, judge(evidence, settings.min_shadow_outcomes)


@app.command("accounts")
def accounts_command(tracking_uri: TrackingUri = None, model_name: ModelName = None) -> None:
    """As the registry's admin (MLFLOW_TRACKING_USERNAME / _PASSWORD), create or update the
    trainer's and the scorer's accounts (passwords from RUMOS_TRAINING_TRAINER_PASSWORD and
    RUMOS_TRAINING_SCORER_PASSWORD) and their grants on the model and its experiment."""
    console = Console(stderr=True, soft_wrap=True)
    settings = _settings(AccountsSettings, tracking_uri=tracking_uri, model_name=model_name)
    accounts = [
        Account(TRAINER_ACCOUNT, settings.trainer_password),
        Account(SCORER_ACCOUNT, settings.scorer_password),
    ]
    use_credentials(settings.tracking_username, settings.tracking_password)
    _run(
        console,
        lambda: provision_accounts(
            settings.tracking_uri,
            accounts,
            model_name=settings.model_name,
            experiment=settings.experiment,
            admin=settings.tracking_username,
        ),
    )
    Console(soft_wrap=True).print(
        f"accounts {TRAINER_ACCOUNT!r} (writes) and {SCORER_ACCOUNT!r} (reads) of "
        f"{settings.model_name!r} are set"
    )


def _client(console: Console, settings: RegistrySettings) -> Any:
    """The registry client for ``settings``, once the server has accepted its account."""
    client = registry_client(settings)
    _run(console, lambda: check_access(client, settings))
    return client


def _verifier(
    console: Console, client: Any, settings: RegistrySettings
) -> Callable[[str], None] | None:
    """How promote checks a version: with the configured public keys, or (explicitly) not at all."""
    if settings.signing_public_key:
        try:
            keys = load_public_keys(settings.signing_public_key)
        except SigningKeyError as exc:
            console.print(f"[red]error:[/] cannot read the public key: {escape(str(exc))}")
            raise typer.Exit(EXIT_USAGE) from exc
        return partial(
            verify_version, client, settings.tracking_uri, settings.model_name, public_keys=keys
        )
    if settings.allow_unsigned_models:
        console.print("[yellow]warning:[/] promoting without verifying: no public key configured")
        return None
    console.print(
        f"[red]error:[/] no public key to verify the version with: set "
        f"{ENV_PREFIX}SIGNING_PUBLIC_KEY (or {ENV_PREFIX}ALLOW_UNSIGNED_MODELS=true)",
        highlight=False,
    )
    raise typer.Exit(EXIT_USAGE)


def _settings(kind: type[_SettingsT], **overrides: Any) -> _SettingsT:
    """Settings from the environment, overridden by the options actually given."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return settings_or_exit(lambda: kind(**given), ENV_PREFIX)


def _run(console: Console, action: Callable[[], _T]) -> _T:
    try:
        return action()
    except TrainingError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(EXIT_USAGE if isinstance(exc, _USER_ERRORS) else EXIT_FAILED) from exc


def _render_report(console: Console, report: TrainingReport) -> None:
    table = Table(
        title=f"{report.model_name}: candidates ({report.wall_seconds:.0f} s)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("family", no_wrap=True)
    # µs/row: batch scoring with reason codes, as the worker does it and the budget gates.
    for column in ("version", "ROC-AUC", "cost", "threshold", "µs/row", "★"):
        table.add_column(column, justify="right", no_wrap=True)
    for c in report.candidates:
        table.add_row(
            str(c.family),
            c.version,
            f"{c.roc_auc:.4f}",
            f"{c.expected_cost:.4f}",
            f"{c.threshold:.4f}",
            f"{c.scoring_us_per_row:.1f}",
            "★" if c is report.champion else "",
        )
    console.print(table)
    if report.champion is not None:
        console.print(
            f"champion: version {report.champion.version} ({report.selection_reason}); "
            f"previous: {report.previous_version or 'none'}"
        )


def _render_state(console: Console, model_name: str, state: AliasState) -> None:
    verb = "now" if state.changed else "already"
    console.print(
        f"{model_name}: champion is {verb} version {state.champion}; "
        f"previous: {state.previous or 'none'}"
    )


def main() -> None:
    """Entry point of ``python -m training``."""
    app()
