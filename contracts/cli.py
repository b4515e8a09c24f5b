"""What every command line of the project shares: exit codes and how bad settings are told.

A supervisor or a shell script reads the exit code, a person reads one line per problem:
``invalid setting SCORER_BATCH_MAX_MESSAGES: Input should be less than or equal to 100000``.
Only names and reasons are printed: a rejected value may be a secret.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Final, TypeVar

from pydantic import ValidationError
from pydantic_settings import SettingsError

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
"""The command ran and did not finish its job (a failure it reported)."""
EXIT_USAGE: Final = 2
"""Bad options or settings: nothing was done."""
EXIT_INTERRUPTED: Final = 130
"""Stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it)."""

_SettingsT = TypeVar("_SettingsT")


def settings_or_exit(build: Callable[[], _SettingsT], env_prefix: str) -> _SettingsT:
    """``build()``, or one line per invalid setting on stderr and ``SystemExit(EXIT_USAGE)``.

    Fields are named as the environment variables that set them: ``env_prefix`` plus the
    field's name, or the field's own upper-case alias (``KAFKA_BOOTSTRAP_SERVERS``).
    """
    try:
        return build()
    except ValidationError as exc:
        # A value failing a union (str | int | ...) fails once per member: say it once.
        problems: dict[str, str] = {}
        for error in exc.errors(include_url=False, include_input=False):
            problems.setdefault(_variable(error["loc"], env_prefix), error["msg"])
        for variable, message in problems.items():
            print(f"invalid setting {variable}: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except SettingsError as exc:  # a JSON setting that is not JSON; the value is not shown
        print(f"invalid settings: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def _variable(location: tuple[int | str, ...], env_prefix: str) -> str:
    """``PREFIX_FIELD``, plus the key inside a mapping setting (``PRODUCER_KAFKA_EXTRA.acks``);
    the union member pydantic appends after the key is left out."""
    if not location:
        return "settings"
    field, *inner = (str(part) for part in location[:2])
    name = field if field.isupper() else f"{env_prefix}{field.upper()}"
    return ".".join([name, *inner])
