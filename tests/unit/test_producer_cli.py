"""The CLI's user-facing behaviour that needs no broker: validation, errors, exit codes."""

from __future__ import annotations

import socket
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from contracts import TARGET_COLUMN
from producer.cli import EXIT_INCOMPLETE, EXIT_USAGE, app

runner = CliRunner()


def _invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in output
    return result.exit_code, output


def test_dry_run_validates_the_real_csv(credit_csv: Path, credit_frame: pd.DataFrame) -> None:
    code, output = _invoke("publish", str(credit_csv), "--dry-run")

    assert code == 0
    assert f"{len(credit_frame)} valid, 0 invalid, nothing sent" in output


def test_dry_run_lists_invalid_rows_by_line_and_column(
    credit_frame: pd.DataFrame, tmp_path: Path
) -> None:
    frame = credit_frame.head(5).astype(str)
    frame.loc[2, "AGE"] = "12"
    path = tmp_path / "some.csv"
    frame.to_csv(path, index=False)

    code, output = _invoke("publish", str(path), "--dry-run")

    assert code == EXIT_INCOMPLETE
    assert "4 valid, 1 invalid" in output
    assert "│ 4    │ AGE" in output  # row index 2 is line 4 (after the header)


def test_dry_run_of_synthetic_applications_prints_its_seed() -> None:
    code, output = _invoke("publish", "--synthetic", "--count", "50", "--dry-run")

    assert code == 0
    assert "synthetic seed:" in output
    assert "50 valid, 0 invalid" in output


def test_dry_run_of_outcomes_validates_the_real_labels(
    credit_csv: Path, credit_frame: pd.DataFrame
) -> None:
    code, output = _invoke("publish-outcomes", str(credit_csv), "--dry-run")

    assert code == 0
    assert f"{len(credit_frame)} valid, 0 invalid, nothing sent" in output


def test_dry_run_of_outcomes_lists_a_bad_label(credit_frame: pd.DataFrame, tmp_path: Path) -> None:
    frame = credit_frame.head(3).astype(str)
    frame.loc[1, TARGET_COLUMN] = "maybe"
    path = tmp_path / "outcomes.csv"
    frame.to_csv(path, index=False)

    code, output = _invoke("publish-outcomes", str(path), "--dry-run", "--observed-on", "2026-1-2")

    assert code == EXIT_INCOMPLETE
    assert "2 valid, 1 invalid" in output
    assert f"│ 3    │ {TARGET_COLUMN}" in output


def test_count_zero_publishes_nothing(credit_csv: Path) -> None:
    code, output = _invoke("publish", str(credit_csv), "--count", "0", "--dry-run")

    assert code == 0
    assert "0 valid, 0 invalid" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["publish", "missing.csv"], "cannot read missing.csv"),
        (["publish", "[bold]x.csv"], "cannot read [bold]x.csv"),  # printed, not rich markup
        (["publish", "applications.txt"], "pass --format csv|jsonl"),
        (["publish"], "give exactly one of a SOURCE file or --synthetic"),
        (["publish", "a.csv", "--synthetic"], "give exactly one of a SOURCE file or --synthetic"),
    ],
)
def test_bad_usage_is_one_message_and_exit_2(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    code, output = _invoke(*args)

    assert code == EXIT_USAGE
    assert message in output


def test_malformed_settings_exit_2_without_echoing_values() -> None:
    code, output = _invoke(
        "publish",
        "--synthetic",
        "--count",
        "1",
        env={"PRODUCER_KAFKA_EXTRA": '{"sasl.password": "hunter2"', "PRODUCER_LINGER_MS": "-1"},
    )

    assert code == EXIT_USAGE
    assert 'invalid settings: error parsing value for field "kafka_extra"' in output
    assert "hunter2" not in output


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_broker_is_one_message_and_exit_1() -> None:
    bootstrap = f"127.0.0.1:{_closed_port()}"
    code, output = _invoke(
        "publish",
        "--synthetic",
        "--count",
        "1",
        env={"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PRODUCER_CONNECT_TIMEOUT_S": "1"},
    )

    assert code == EXIT_INCOMPLETE
    assert f"no Kafka broker answered at {bootstrap}" in output


def test_follow_output_that_cannot_be_written_exits_2(tmp_path: Path) -> None:
    code, output = _invoke(
        "follow", "--output", str(tmp_path), env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    )

    assert code == EXIT_USAGE
    assert f"cannot write {tmp_path}" in output
