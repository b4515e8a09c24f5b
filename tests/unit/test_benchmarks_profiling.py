"""Summaries of py-spy's raw stacks: main thread only, inclusive shares, enclosing frames out."""

from __future__ import annotations

import pytest

from benchmarks.profiling import summarize

MAIN = "thread (101): MainThread"
RUN = "main (consumer/cli.py:60);Worker.run (consumer/worker.py:150)"

COLLAPSED = "\n".join(
    [
        # 60 samples waiting in send_offsets (via _transact), two different lines of _transact.
        f"{MAIN};{RUN};Worker._transact (consumer/worker.py:240);"
        "KafkaTransport.send_offsets (consumer/transport.py:190) 40",
        f"{MAIN};{RUN};Worker._transact (consumer/worker.py:241);"
        "KafkaTransport.send_offsets (consumer/transport.py:190) 20",
        # 30 samples decoding, 10 in consume.
        f"{MAIN};{RUN};decode_application (consumer/decoding.py:50);"
        "BaseModel.model_validate_json (pydantic/main.py:847) 30",
        f"{MAIN};{RUN};KafkaTransport.consume (consumer/transport.py:160) 10",
        # Other threads never count.
        "thread (202): ops-http;Thread.run (threading.py:982);"
        "KafkaTransport.consume (consumer/transport.py:160) 500",
        "not a stack line",
    ]
)


def test_shares_are_inclusive_per_function_of_the_main_thread() -> None:
    shares = {f.function: f.share for f in summarize(COLLAPSED)}

    assert shares == {
        "Worker._transact (consumer/worker.py)": pytest.approx(0.6),
        "KafkaTransport.send_offsets (consumer/transport.py)": pytest.approx(0.6),
        "decode_application (consumer/decoding.py)": pytest.approx(0.3),
        "KafkaTransport.consume (consumer/transport.py)": pytest.approx(0.1),
    }


def test_enclosing_frames_and_other_packages_are_left_out() -> None:
    functions = [f.function for f in summarize(COLLAPSED)]

    assert "Worker.run (consumer/worker.py)" not in functions  # on every sample
    assert not any("pydantic" in name for name in functions)


def test_the_top_limit_keeps_the_largest_shares_in_order() -> None:
    shares = summarize(COLLAPSED, top=2)

    assert [f.share for f in shares] == [pytest.approx(0.6), pytest.approx(0.6)]


def test_a_profile_without_main_thread_samples_summarizes_to_nothing() -> None:
    assert summarize("thread (7): Thread-1;f (consumer/x.py:1) 5") == []
