"""``python -m training``: see :mod:`training.cli`."""

from training.cli import main

if __name__ == "__main__":
    main()
