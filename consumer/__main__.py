"""``python -m consumer``: see :mod:`consumer.cli`."""

import sys

from consumer.cli import main

if __name__ == "__main__":
    sys.exit(main())
