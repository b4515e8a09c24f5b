"""The short, in-suite version of the decoder fuzz run (the long one: ``scripts/fuzz-decoder``).

Hypothesis drives the fuzz target's own input shaping with a large example budget, and the
atheris command runs for a few seconds to prove it works as documented.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack import ROOT
from tests.fuzz.fuzz_decoder import shape_input
from tests.fuzz.invariants import check_decoding

_FUZZ_SECONDS = 5


@settings(max_examples=3_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_fuzz_target_holds_on_hypothesis_inputs(data: bytes) -> None:
    check_decoding(shape_input(data))


def test_the_fuzz_command_runs_its_budget_and_finds_nothing(tmp_path: Path) -> None:
    command = [str(ROOT / "scripts" / "fuzz-decoder"), "--seconds", str(_FUZZ_SECONDS)]
    result = subprocess.run(
        [*command, "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=_FUZZ_SECONDS + 120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    executed = re.search(r"stat::number_of_executed_units: (\d+)", output)
    assert executed, output[-3000:]
    assert int(executed.group(1)) > 1_000
    assert not list(tmp_path.glob("crash-*"))
    assert len(list((tmp_path / "corpus").iterdir())) > 0
