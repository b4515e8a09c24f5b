"""Sampling profiles of a running worker with py-spy, summarized per function.

``py-spy record --idle`` samples the worker's Python stacks from outside the process
(no instrumentation, no restart), waits included: a worker blocked in a Kafka call
shows as time in that call. The summary keeps the main thread (the scoring loop) and
gives each function's inclusive share of the samples.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from pydantic import BaseModel

from benchmarks import BenchmarkError

_SAMPLES_PER_S: Final = 100
_STOP_TIMEOUT_S: Final = 60.0
_LINE_NUMBER: Final = re.compile(r":\d+\)$")
_MAIN_THREAD: Final = "MainThread"
# Functions on (almost) every sample are the loop's enclosing frames: no information.
_ENCLOSING_SHARE: Final = 0.95


class FunctionShare(BaseModel):
    """A function and the share of main-thread samples with it on the stack."""

    function: str
    share: float


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter (or on PATH), if installed."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.is_file() else shutil.which("py-spy")


@contextmanager
def profiling(pid: int, output: Path) -> Iterator[None]:
    """``py-spy record`` attached to ``pid`` while the block runs; raw stacks to ``output``."""
    if (executable := py_spy()) is None:
        raise BenchmarkError("py-spy is not installed")
    command = [executable, "record", "--pid", str(pid), "--idle", "--threads", "--nonblocking"]
    command += ["--rate", str(_SAMPLES_PER_S), "--format", "raw", "--output", str(output)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            _, errors = process.communicate(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise BenchmarkError("py-spy did not stop") from None
    if not output.is_file():
        raise BenchmarkError(f"py-spy wrote no profile: {errors.decode(errors='replace')[-500:]}")


def summarize(collapsed: str, *, package: str = "consumer/", top: int = 12) -> list[FunctionShare]:
    """The ``top`` functions of ``package`` by inclusive share of the main thread's samples,
    leaving out the enclosing frames present on 95% of samples or more.

    ``collapsed`` is py-spy's raw output with ``--threads``: one line per distinct stack,
    ``thread (<id>): <name>;frame;frame... <count>``, each frame ``function (file:line)``.
    Line numbers are dropped, so a function counts once per stack whatever the line.
    """
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        thread, _, frames = stack.partition(";")
        if not count.isdigit() or not thread.endswith(f": {_MAIN_THREAD}"):
            continue
        samples = int(count)
        total += samples
        for function in {_LINE_NUMBER.sub(")", frame) for frame in frames.split(";") if frame}:
            inclusive[function] += samples
    if total == 0:
        return []
    return [
        FunctionShare(function=function, share=round(samples / total, 4))
        for function, samples in inclusive.most_common()
        if package in function and samples / total < _ENCLOSING_SHARE
    ][:top]
