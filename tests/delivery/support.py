"""Readers for the delivery files (Dockerfile, compose, workflows).

These tests need no Docker engine: they read the files and check them against each other
and against the code they run (the worker's Settings, the CLI modules). Their linters
(hadolint, actionlint, zizmor, shellcheck, the Compose Specification) run in `make lint`.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

VENV_BIN = Path(sys.executable).parent

_INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` with ``env`` set.

    A ``:?`` variable missing from ``env`` raises ``KeyError``, as compose refuses to start.
    """
    env = env or {}

    def _one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise KeyError(f"{name}: {arg}")
        return ""

    return _INTERPOLATION.sub(_one, value.replace("$$", "\0")).replace("\0", "$")


def variables_in(text: str) -> dict[str, str | None]:
    """Every ``${VAR...}`` in ``text``: name -> its operator (``:-``, ``:?``) or None."""
    return {m["name"]: m["op"] for m in _INTERPOLATION.finditer(text)}


def settings_env_names(settings: type[BaseSettings]) -> set[str]:
    """The environment variable names a pydantic-settings class reads (upper case)."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            names.update(c.upper() for c in alias.choices if isinstance(c, str))
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined, in its build stage."""

    keyword: str
    arguments: str
    stage: str
    line: int


def global_args(dockerfile: list[Instruction]) -> dict[str, str]:
    """The ``ARG NAME=default`` lines before the first ``FROM`` (usable in ``FROM`` lines)."""
    defaults: dict[str, str] = {}
    for instruction in dockerfile:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            name, _, default = instruction.arguments.partition("=")
            defaults[name] = default
    return defaults


def base_images(dockerfile: list[Instruction]) -> dict[str, str]:
    """Each stage's base image as written (``${NAME}`` for a build argument), by stage."""
    return {i.stage: i.arguments.split()[0] for i in dockerfile if i.keyword == "FROM"}


def resolve_arg(image: str, defaults: dict[str, str]) -> str:
    """``${NAME}`` (or ``$NAME``) replaced by the build argument's default."""
    match = re.fullmatch(r"\$\{?(\w+)\}?", image)
    return defaults[match[1]] if match else image


def default_base(dockerfile: list[Instruction], stage: str) -> str:
    """The image ``stage`` builds on when no build argument is passed: its ``FROM`` with the
    arguments at their defaults, through any earlier stage it names."""
    images, defaults = base_images(dockerfile), global_args(dockerfile)
    image = resolve_arg(images[stage], defaults)
    while image in images:
        image = resolve_arg(images[image], defaults)
    return image


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order; comment lines (also inside continuations) are dropped."""
    instructions: list[Instruction] = []
    stage = ""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        continued = stripped.endswith("\\")
        pending.append(stripped.removesuffix("\\").strip())
        if continued:
            continue
        keyword, _, arguments = " ".join(pending).partition(" ")
        pending = []
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = arguments.split()
            stage = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else parts[0]
        instructions.append(Instruction(keyword, arguments.strip(), stage, start))
    return instructions
