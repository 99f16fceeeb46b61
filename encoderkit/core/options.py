"""Typed options: each converter (and the validation step) declares a frozen dataclass whose fields
are its options, with help text and CLI spelling in the field metadata. The CLI's flags and the
Python keyword arguments are both generated from, and checked against, those dataclasses, so a
misspelt or unknown option is an error naming the valid ones -- never silently ignored.
Ground floor: no framework imports.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .errors import InputError, UnknownNameError


def option(default: Any, help: str, *, choices: tuple | None = None, cli: bool = True,
           type: Any = None) -> Any:  # noqa: A002 - argparse's own words
    """A dataclass field that is an option: ``cli=False`` keeps it Python-only (tests, experts)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "cli": cli,
                                                        "type": type})


def option_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def make_options(cls: type, values: dict[str, Any], *, owner: str) -> Any:
    """Build ``cls`` from ``values``, checking every name and every value with choices.

    Raises:
        UnknownNameError: a name that is not an option of ``cls``, listing the valid ones.
        InputError: a value outside its choices.
    """
    names = option_names(cls)
    for key in values:
        if key not in names:
            raise UnknownNameError(f"unknown option {key!r} for {owner}; valid options: "
                                   f"{', '.join(names) or 'none'}")
    for f in dataclasses.fields(cls):
        choices = f.metadata.get("choices")
        if choices and f.name in values and values[f.name] not in choices:
            raise InputError(f"{owner}: {cli_flag(f)} takes {' or '.join(map(str, choices))}, "
                             f"got {values[f.name]!r}")
    return cls(**values)


def cli_flag(f: dataclasses.Field) -> str:
    name = f.name.replace("_", "-")
    if f.default is True:
        return f"--no-{name}"
    return f"--{name}"


def add_cli_flags(parser: argparse.ArgumentParser | Any, cls: type,
                  seen: dict[str, argparse.Action] | None = None, owner: str | None = None) -> None:
    """Add one flag per CLI option of ``cls``; only flags the user gives end up in the namespace
    (``default=SUPPRESS``), so the dataclass defaults stay the one set of defaults.

    ``seen`` (flag -> action) is shared across calls: an option several formats have (``--quantize``)
    is one flag whose help names each ``owner``'s use of it, and every one of them receives it."""
    seen = {} if seen is None else seen
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True):
            continue
        flag, kw = cli_flag(f), {"dest": f.name, "default": argparse.SUPPRESS, "help": f.metadata["help"]}
        if flag in seen:
            seen[flag].help = f"{seen[flag].help}; {owner or cls.__name__}: {f.metadata['help']}"
            continue
        if f.default is True:
            seen[flag] = parser.add_argument(flag, action="store_false", **kw)
        elif f.default is False:
            seen[flag] = parser.add_argument(flag, action="store_true", **kw)
        else:
            typ = f.metadata.get("type") or (type(f.default) if f.default is not None else str)
            choices = f.metadata.get("choices")
            seen[flag] = parser.add_argument(flag, type=typ, choices=choices, **kw)


def values_from_namespace(ns: argparse.Namespace, cls: type) -> dict[str, Any]:
    return {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)}
