"""``python -m consumer`` refuses bad settings with a clear message and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
        SCORER_ALLOW_UNSIGNED_MODELS="true",
    )
    assert result.returncode == 2
    assert "invalid Kafka configuration" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_a_public_key_the_worker_refuses_to_start_and_says_how_to_fix_it() -> None:
    result = _run(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", MLFLOW_TRACKING_URI="http://127.0.0.1:1")
    assert result.returncode == 2
    assert "no public key to verify models with" in result.stderr
    assert "SCORER_MODEL_SIGNING_PUBLIC_KEY" in result.stderr
    assert "SCORER_ALLOW_UNSIGNED_MODELS=true" in result.stderr


def test_an_unreadable_public_key_stops_start_up_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pub"
    not_a_key = tmp_path / "not-a-key.pub"
    not_a_key.write_text("-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n")
    for source, reason in ((missing, "cannot read"), (not_a_key, "not a PEM public key")):
        result = _run(
            KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
            MLFLOW_TRACKING_URI="http://127.0.0.1:1",
            SCORER_MODEL_SIGNING_PUBLIC_KEY=str(source),
        )
        assert result.returncode == 2
        assert f"{source}: {reason}" in result.stderr
        assert "Traceback" not in result.stderr
