"""The worker's entry point (``python -m consumer``): build the settings, wire the worker,
run it until a signal.

Exit codes: 0 after SIGTERM/SIGINT (the batch in hand is committed first), 1 on a
fatal Kafka error (e.g. fenced by a newer instance with the same worker id), 2 on
invalid settings, registry credentials refused at start-up (or the model not readable
with them), or an unusable HTTP port / Kafka configuration, 3 when the stall
watchdog finds the loop stuck, 4 when the worker could not consume even after
replacing its Kafka clients (see ``consumer.worker``); restart on 1, 3 and 4.
SIGUSR1 writes every thread's stack to stderr and changes nothing else.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
from typing import Final

from consumer.errors import FatalTransportError, RegistryAccessError
from consumer.logs import configure_logging
from consumer.model import AliasWatcher, RegistryLoader
from consumer.ops import Metrics, OpsServer
from consumer.settings import ENV_PREFIX, Settings
from consumer.transport import KafkaTransport
from consumer.vetting import ModelTrust
from consumer.worker import Worker
from contracts.cli import EXIT_USAGE, settings_or_exit
from contracts.model_trust import SigningKeyError, load_public_keys
from contracts.registry_access import use_credentials

_log = logging.getLogger("consumer")

DUMP_STACKS_SIGNAL: Final = signal.SIGUSR1
"""Writes every thread's stack to stderr; the worker carries on."""

# MLflow's HTTP client retries a refused connection for minutes by default; the
# alias watcher has its own backoff, so each attempt should fail fast and say why.
_MLFLOW_CLIENT_DEFAULTS: Final = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def main() -> int:
    """Run the worker; returns the exit code."""
    settings = settings_or_exit(_settings_from_environment, ENV_PREFIX)
    configure_logging(settings.log_level)
    for name, value in _MLFLOW_CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    use_credentials(settings.mlflow_tracking_username, settings.mlflow_tracking_password)
    _log.info("starting", extra={"settings": settings.redacted()})
    try:
        trust = _model_trust(settings)
    except SigningKeyError as exc:
        _log.critical("cannot start", extra={"reason": str(exc)})
        return EXIT_USAGE

    metrics = Metrics()
    loader = _loader(settings, trust, settings.model_alias)
    watcher = AliasWatcher(loader, interval_s=settings.reload_interval_s, events=metrics)
    shadow = (
        AliasWatcher(
            _loader(settings, trust, settings.shadow_alias),
            interval_s=settings.reload_interval_s,
            events=metrics.shadow_events(),
            role="shadow",
        )
        if settings.shadow_alias
        else None
    )
    try:
        worker = Worker(
            settings,
            transport=KafkaTransport(settings),
            models=watcher,
            metrics=metrics,
            shadow=shadow,
        )
        ops = OpsServer(
            settings.http_host,
            settings.http_port,
            metrics=metrics,
            readiness=worker.readiness,
            model=lambda: watcher.current,
            warnings=lambda: _warnings(watcher, shadow, worker),
            liveness=worker.liveness,
            refusal=lambda: _refusal(watcher),
            shadow=lambda: _shadow_status(settings.shadow_alias, shadow, worker, watcher),
        )
    except (FatalTransportError, OSError) as exc:
        _log.critical("cannot start", extra={"reason": str(exc)})
        return EXIT_USAGE
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, _frame: _stop(worker, received))
    # An operator's (or a failed test's) view of a worker that looks stuck: faulthandler
    # writes from C, so it answers even when a C call holds the GIL.
    faulthandler.register(DUMP_STACKS_SIGNAL, all_threads=True)

    ops.start()  # answering while the registry is asked, however long that takes
    try:
        # Refused credentials never heal: say so now rather than retry for ever unready.
        loader.check_access()
    except RegistryAccessError as exc:
        _log.critical("cannot start", extra={"reason": str(exc)})
        ops.stop()
        return EXIT_USAGE
    watcher.start()
    if shadow is not None:
        shadow.start()
    try:
        return worker.run()
    finally:
        watcher.stop()
        if shadow is not None:
            shadow.stop()
        ops.stop()


def _loader(settings: Settings, trust: ModelTrust, alias: str) -> RegistryLoader:
    """The loader of ``alias``: the same registry account, vetting and cache for the champion
    and the shadow challenger."""
    return RegistryLoader(
        tracking_uri=settings.mlflow_tracking_uri,
        model_name=settings.model_name,
        alias=alias,
        cache_dir=settings.model_cache_dir,
        trust=trust,
        username=settings.mlflow_tracking_username,
    )


def _settings_from_environment() -> Settings:
    return Settings()  # type: ignore[call-arg]  # required fields come from the environment


def _model_trust(settings: Settings) -> ModelTrust:
    """The keys versions must be signed with; raises ``SigningKeyError`` when there are none
    and unsigned models are not explicitly allowed, or a key cannot be read."""
    source = settings.model_signing_public_key
    keys = load_public_keys(source) if source else []
    if settings.allow_unsigned_models:
        _log.warning(
            "UNSIGNED MODELS ALLOWED: %s",
            "signed versions are still verified"
            if keys
            else "no public key: no version's signature or files are checked",
            extra={"allow_unsigned_models": True, "public_keys": len(keys)},
        )
    elif not keys:
        raise SigningKeyError(
            f"no public key to verify models with: set {ENV_PREFIX}MODEL_SIGNING_PUBLIC_KEY "
            f"(a PEM file or text), or {ENV_PREFIX}ALLOW_UNSIGNED_MODELS=true to serve "
            "unsigned models"
        )
    return ModelTrust(public_keys=tuple(keys), allow_unsigned=settings.allow_unsigned_models)


def _refusal(watcher: AliasWatcher) -> dict[str, str] | None:
    refused = watcher.refused
    return refused.describe() if refused else None


def _warnings(champion: AliasWatcher, shadow: AliasWatcher | None, worker: Worker) -> list[str]:
    problem = champion.problem
    warnings = [problem] if problem else []
    if shadow is not None:
        problems = _shadow_problems(shadow, worker, champion)
        warnings += [f"shadow challenger: {p}" for p in problems]
    return warnings


def _shadow_problems(shadow: AliasWatcher, worker: Worker, champion: AliasWatcher) -> list[str]:
    """Why the shadow challenger is not scoring (empty when it is)."""
    problems = [p for p in (shadow.problem, worker.shadow_failure) if p]
    current, serving = shadow.current, champion.current
    if current is None and not problems:
        problems.append("not loaded yet")
    elif current is not None and serving is not None and current.version == serving.version:
        problems.append(f"version {current.version} is the champion: nothing to compare")
    return problems


def _shadow_status(
    alias: str | None, shadow: AliasWatcher | None, worker: Worker, champion: AliasWatcher
) -> dict[str, object] | None:
    """``/model``'s ``shadow``: the alias, the loaded challenger (or None) and its problems."""
    if alias is None or shadow is None:
        return None
    current = shadow.current
    refused = shadow.refused
    return {
        "alias": alias,
        "model": current.describe() if current else None,
        "refused": refused.describe() if refused else None,
        "problems": _shadow_problems(shadow, worker, champion),
    }


def _stop(worker: Worker, signum: int) -> None:
    _log.info("stop requested", extra={"signal": signal.Signals(signum).name})
    worker.stop()
