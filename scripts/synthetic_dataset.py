"""``python -m scripts.synthetic_dataset PATH [--rows N] [--seed S]``: a made-up
``credit_default.csv`` in the UCI layout (``producer.synthetic.write_synthetic_dataset``),
for a machine without the real dataset: CI on a fork trains and tests on it
(.github/scripts/dataset.sh).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from producer.synthetic import write_synthetic_dataset


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--rows", type=int, default=27_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    write_synthetic_dataset(args.path, args.rows, args.seed)
    print(f"synthetic_dataset: {args.rows} made-up rows in {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
