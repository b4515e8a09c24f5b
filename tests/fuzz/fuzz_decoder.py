"""Coverage-guided fuzzing of the worker's decoder with atheris (libFuzzer), bounded in time.

    scripts/fuzz-decoder [--seconds N] [--runs N] [--workdir DIR]   (people and CI)
    scripts/fuzz-decoder --replay DIR/crash-<sha1>...                 (re-run found inputs)

Each input is shaped by ``shape_input`` (raw bytes, or a valid application with one field
or the id replaced by the fuzzed bytes, so mutations reach validation as often as the
parser) and goes through ``tests.fuzz.invariants.check_decoding``; a broken invariant or
an exception escaping the decoder is a crash: libFuzzer stops, writes the input to
``DIR/crash-<sha1>`` and the run exits non-zero. The corpus in ``DIR/corpus`` is seeded
from the explicit hostile corpus and grows across runs. The parser itself is native code
(pydantic-core), so coverage guidance only sees the Python side of decoding; the seeds,
a dictionary of JSON and contract tokens, value profiling and the shaping do the rest.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Final

from contracts import FEATURE_COLUMNS
from devstack import ROOT
from tests.fuzz.corpus import HOSTILE_CORPUS, valid_json, with_raw

_DEFAULT_WORKDIR: Final = ROOT / ".cache" / "fuzz" / "decoder"
_MAX_LEN: Final = 8192
"""Longer than ``FUZZ_MAX_BYTES``, so the oversize path is fuzzed too."""
_PER_INPUT_TIMEOUT_S: Final = 10
_RSS_LIMIT_MB: Final = 2048
_FIELDS: Final = ("application_id", "submitted_at", *FEATURE_COLUMNS)
_DICTIONARY: Final[tuple[bytes, ...]] = (
    *(f'"{name}":'.encode() for name in _FIELDS),
    *(b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-0.0", b"1e-400", b"true", b"null"),
    *(b"\\u0000", b"\\ud800", b"\\udc00", b"\\ud83d\\ude00", b"\\u202e", b"\\ufeff"),
    *(b"\xef\xbb\xbf", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x80\xae"),
    *(b'"2024-01-01T00:00:00Z"', b"9" * 30),
)
"""Tokens libFuzzer splices into inputs: field names, literals, escapes, edge bytes."""


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/fuzz-decoder",
        description="Fuzz consumer.decoding.decode_application for a bounded time.",
    )
    parser.add_argument("--seconds", type=int, default=60, help="total fuzzing time (default: 60)")
    parser.add_argument(
        "--runs", type=int, default=-1, help="stop after this many inputs (default: no limit)"
    )
    parser.add_argument(
        "--replay",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="run these inputs once through the checks (no fuzzing) and show the outcome",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=_DEFAULT_WORKDIR,
        help=f"corpus and crash files (default: {_DEFAULT_WORKDIR.relative_to(ROOT)})",
    )
    arguments = parser.parse_args(argv)
    if arguments.seconds < 1:
        parser.error("--seconds must be at least 1")
    return arguments


def shape_input(data: bytes) -> bytes:
    """The record value a fuzzer input stands for; its first byte picks the shape.

    ``0`` (or empty input): the remaining bytes as they are. ``1``: a valid application whose
    field picked by the second byte holds the remaining bytes as raw JSON. ``2``: a valid
    application whose id is the JSON string with the remaining bytes as its body.
    """
    if not data or data[0] % 3 == 0:
        return data[1:]
    if data[0] % 3 == 1 and len(data) > 1:
        return with_raw(_FIELDS[data[1] % len(_FIELDS)], data[2:])
    return with_raw("application_id", b'"' + data[1:] + b'"')


def _seed_inputs() -> list[bytes]:
    """The corpus values as raw-shape inputs, plus valid applications in the other shapes."""
    raw = [b"\x00" + case.value for case in HOSTILE_CORPUS if case.value]
    shaped = [b"\x01" + bytes([index]) + b"24" for index in range(len(_FIELDS))]
    return [
        seed
        for seed in [*raw, *shaped, b"\x02app-1", b"\x00" + valid_json()]
        if len(seed) <= _MAX_LEN
    ]


def _prepare(workdir: Path) -> tuple[Path, Path, int]:
    """Write the seeds (named by hash) and the dictionary; returns their paths and seed count."""
    corpus_dir = workdir / "corpus"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    seeds = _seed_inputs()
    for seed in seeds:
        (corpus_dir / hashlib.sha1(seed, usedforsecurity=False).hexdigest()).write_bytes(seed)
    dictionary = workdir / "decoder.dict"
    dictionary.write_text("".join(f'"{_escape(token)}"\n' for token in _DICTIONARY))
    return corpus_dir, dictionary, len(seeds)


def _escape(token: bytes) -> str:
    """``token`` in libFuzzer's dictionary syntax: printable ASCII as is, the rest as \\xHH."""
    return "".join(
        chr(byte) if 0x20 <= byte < 0x7F and byte not in b'"\\' else f"\\x{byte:02x}"
        for byte in token
    )


def _replay(files: list[Path]) -> None:
    from tests.fuzz.invariants import check_decoding

    for path in files:
        value = shape_input(path.read_bytes())
        print(f"{path}: {len(value)} bytes -> {check_decoding(value)!r}")


def main(argv: list[str] | None = None) -> None:
    """Seed the corpus, then fuzz until the time or run budget is spent (or a crash)."""
    arguments = _arguments(sys.argv[1:] if argv is None else argv)
    if arguments.replay:
        _replay(arguments.replay)
        return
    try:
        import atheris
    except ImportError:
        sys.exit("fuzz-decoder: atheris is not installed (a dev dependency): run scripts/bootstrap")

    with atheris.instrument_imports(include=["consumer", "tests.fuzz.invariants"]):
        from tests.fuzz.invariants import check_decoding

    def one_input(data: bytes) -> None:
        check_decoding(shape_input(data))

    corpus_dir, dictionary, seeded = _prepare(arguments.workdir)
    print(f"fuzz-decoder: {seeded} seeds in {corpus_dir}, {arguments.seconds}s budget", flush=True)
    libfuzzer_flags = [
        sys.argv[0],
        f"-max_total_time={arguments.seconds}",
        f"-runs={arguments.runs}",
        f"-max_len={_MAX_LEN}",
        f"-timeout={_PER_INPUT_TIMEOUT_S}",
        f"-rss_limit_mb={_RSS_LIMIT_MB}",
        f"-artifact_prefix={arguments.workdir}/",
        f"-dict={dictionary}",
        "-use_value_profile=1",
        "-print_final_stats=1",
        str(corpus_dir),
    ]
    atheris.Setup(libfuzzer_flags, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
