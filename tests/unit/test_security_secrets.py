"""Configured secrets never show: not in settings' reprs, logs, error output or HTTP endpoints.

No broker: the worker runs as a real process against addresses where nothing listens, so
its start-up log, its MLflow retry warnings and its ops endpoints are all exercised.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consumer.logs import configure_logging
from consumer.settings import Settings as WorkerSettings
from devstack import ROOT, free_port
from producer.cli import app as producer_app
from producer.settings import Settings as ProducerSettings

_WAIT_S = 60.0


@pytest.fixture
def secret_values() -> dict[str, str]:
    """Fresh, unguessable values, so a match in any output can only be a leak."""
    names = ("sasl", "key", "oauth", "mlflow_uri", "mlflow_token", "mlflow_password")
    return {name: f"s3cr3t-{name}-{secrets.token_hex(8)}" for name in names}


def _kafka_extra(values: dict[str, str]) -> str:
    return json.dumps(
        {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "scorer",
            "sasl.password": values["sasl"],
            "ssl.key.password": values["key"],
        }
    )


def _clean_env() -> dict[str, str]:
    prefixes = ("SCORER_", "PRODUCER_", "MLFLOW_", "KAFKA_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def _assert_absent(values: dict[str, str], *outputs: str) -> None:
    for output in outputs:
        for name, value in values.items():
            assert value not in output, f"the {name} secret leaked"


@pytest.fixture
def worker_env(secret_values: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    nobody = free_port()  # nothing listens there: Kafka and MLflow are unreachable
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{nobody}",
        "MLFLOW_TRACKING_URI": f"http://scorer:{secret_values['mlflow_uri']}@127.0.0.1:{nobody}",
        "MLFLOW_TRACKING_TOKEN": secret_values["mlflow_token"],
        "MLFLOW_TRACKING_USERNAME": "scorer",
        "MLFLOW_TRACKING_PASSWORD": secret_values["mlflow_password"],
        "SCORER_KAFKA_EXTRA": _kafka_extra(secret_values),
        "SCORER_CONSUMER_EXTRA": json.dumps(
            {"sasl.oauthbearer.client.secret": secret_values["oauth"]}
        ),
        "SCORER_LOG_LEVEL": "DEBUG",
        "SCORER_HTTP_HOST": "127.0.0.1",
        "SCORER_HTTP_PORT": str(free_port()),
        "SCORER_RELOAD_INTERVAL_S": "0.5",
        "SCORER_ALLOW_UNSIGNED_MODELS": "true",  # it never reaches a registry
    }
    for name in list(os.environ):
        if name.startswith(("SCORER_", "MLFLOW_")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_worker_settings_reprs_and_start_up_log_mask_every_secret(
    worker_env: dict[str, str], secret_values: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = WorkerSettings()  # type: ignore[call-arg]
    configure_logging("DEBUG")
    log = logging.getLogger("consumer")
    log.info("starting", extra={"settings": settings.redacted()})
    log.info("settings object", extra={"settings": settings})
    logging.getLogger().handlers.clear()

    shown = [
        repr(settings),
        str(settings),
        json.dumps(settings.redacted()),
        capsys.readouterr().err,
    ]
    _assert_absent(secret_values, *shown)
    assert "**********" in shown[-1], "the log line should show that a secret was masked"
    assert settings.redacted()["mlflow_tracking_password"] == "*" * 10
    # The secrets are still there for the Kafka client, just never displayed.
    assert settings.kafka_extra["sasl.password"].get_secret_value() == secret_values["sasl"]  # type: ignore[union-attr]


@pytest.fixture
def worker(
    worker_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    log_path = tmp_path / "worker.log"
    env = {**_clean_env(), **worker_env, "SCORER_MODEL_CACHE_DIR": str(tmp_path / "models")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "consumer"], env=env, cwd=ROOT, stdout=log, stderr=log
        )
    yield process, log_path
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (http://127.0.0.1)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def test_the_running_worker_shows_no_secret_in_its_log_or_endpoints(
    worker: tuple[subprocess.Popen[bytes], Path],
    worker_env: dict[str, str],
    secret_values: dict[str, str],
) -> None:
    process, log_path = worker
    base = f"http://127.0.0.1:{worker_env['SCORER_HTTP_PORT']}"
    deadline = time.monotonic() + _WAIT_S
    # Wait until the model watcher has failed against MLflow at least twice (its warnings
    # carry the error) and the ops server answers.
    while log_path.read_text(errors="replace").count('"level":"WARNING"') < 2 or (
        _get(base + "/healthz")[0] != 200
    ):
        assert process.poll() is None, log_path.read_text(errors="replace")
        assert time.monotonic() < deadline, log_path.read_text(errors="replace")
        time.sleep(0.2)  # polling a log file: no readiness signal to wait on
    bodies = {path: _get(base + path) for path in ("/healthz", "/readyz", "/model", "/metrics")}
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=_WAIT_S) == 0
    log = log_path.read_text(errors="replace")

    assert bodies["/readyz"][0] == 503
    assert bodies["/model"][0] == 503
    assert bodies["/metrics"][0] == 200
    _assert_absent(secret_values, log, *(body for _, body in bodies.values()))
    assert "scorer:***@" in log, "the tracking URI is logged with its password masked"


@pytest.mark.parametrize(
    "extra",
    ['{{"sasl.password": "{secret}", ', '{{"sasl.password": "{secret}", "linger.ms": [1]}}'],
    ids=["not JSON", "wrong type"],
)
def test_invalid_worker_settings_exit_2_without_echoing_values(
    extra: str, secret_values: dict[str, str]
) -> None:
    env = {
        **_clean_env(),
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:1",
        "SCORER_KAFKA_EXTRA": extra.format(secret=secret_values["sasl"]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "consumer"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=_WAIT_S,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "invalid setting" in result.stderr
    assert "Traceback" not in result.stderr
    _assert_absent(secret_values, result.stdout, result.stderr)


def test_producer_settings_reprs_mask_every_secret(
    secret_values: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRODUCER_KAFKA_EXTRA", _kafka_extra(secret_values))
    settings = ProducerSettings()
    _assert_absent(
        {k: secret_values[k] for k in ("sasl", "key")},
        repr(settings),
        str(settings),
        settings.model_dump_json(),
    )
    assert settings.kafka_common()["sasl.password"] == secret_values["sasl"]


@pytest.mark.parametrize(
    "extra",
    ['{{"sasl.password": "{secret}", ', '{{"sasl.password": "{secret}", "linger.ms": [1]}}'],
    ids=["not JSON", "wrong type"],
)
def test_invalid_producer_settings_exit_2_without_echoing_values(
    extra: str, secret_values: dict[str, str]
) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "PRODUCER_KAFKA_EXTRA": extra.format(secret=secret_values["sasl"]),
    }
    result = CliRunner().invoke(
        producer_app, ["publish", "--synthetic", "--count", "1", "--seed", "1"], env=env
    )
    assert result.exit_code == 2, result.output
    assert "invalid setting" in result.output
    _assert_absent(secret_values, result.output)
