"""``python -m consumer`` refuses bad settings with a clear message and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

from devstack import ROOT


def _run(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SCORER_")
        and k not in ("KAFKA_BOOTSTRAP_SERVERS", "MLFLOW_TRACKING_URI")
    }
    return subprocess.run(
        [sys.executable, "-m", "consumer"],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_missing_and_invalid_settings_are_named_without_a_traceback() -> None:
    result = _run(MLFLOW_TRACKING_URI="http://mlflow:5000", SCORER_BATCH_MAX_MESSAGES="zero")
    assert result.returncode == 2
    assert "invalid setting KAFKA_BOOTSTRAP_SERVERS: Field required" in result.stderr
    assert "invalid setting SCORER_BATCH_MAX_MESSAGES: " in result.stderr
    assert "Traceback" not in result.stderr


def test_an_invalid_kafka_property_stops_start_up_with_exit_2() -> None:
    result = _run(
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
        MLFLOW_TRACKING_URI="http://127.0.0.1:1",
        SCORER_KAFKA_EXTRA='{"no.such.property": "1"}',
        SCORER_HTTP_PORT="0",
    )
    assert result.returncode == 2
    assert "invalid Kafka configuration" in result.stderr
    assert "Traceback" not in result.stderr
