"""Settings declared once, as dataclass fields, and the two ways they travel as command-line flags.

A setting is a field made with :func:`setting`: its default and its help text side by side. A
command derives its options from the dataclass (:func:`add_setting_arguments`: ``--max-steps``
for ``max_steps``, the type from the annotation) and builds the dataclass back from the parsed
flags (:func:`settings_from_args`); a flag left out keeps the field's default, so defaults live
in the dataclass alone. The workflow goes the other way: :func:`with_defaults` fills a config
section's omitted settings from the same dataclass, and :func:`flag_args` renders a section as a
rule's flags, so Snakemake reruns a rule exactly when one of its flags changes.

Not ``transformers.HfArgumentParser``: it has no mutually exclusive groups, no tuple or mapping
fields, and cannot put two dataclasses that share fields (the two API judges) on one parser.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lite.io import number_list_type


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    parse: Callable[[str], Any] | None = None,
    choices: Iterable[str] | None = None,
) -> Any:
    """A dataclass field with what its command-line option needs: ``help``, and ``parse`` (an
    argparse ``type``) for a field whose annotation does not say how to read it."""
    metadata = {"help": help, "parse": parse, "choices": None if choices is None else tuple(choices)}
    return dataclasses.field(default=default, metadata=metadata)


def add_setting_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    skip: Iterable[str] = (),
    one_of: Iterable[tuple[str, ...]] = (),
    required: Iterable[str] = (),
) -> None:
    """One option per field of the dataclass ``cls`` (but those in ``skip``). Each tuple of field
    names in ``one_of`` becomes a required mutually exclusive group; the fields in ``required`` are
    required options. Every option's argparse default is None, meaning "not given":
    :func:`settings_from_args` leaves those fields at their defaults."""
    skip, required = set(skip), set(required)
    groups = {}
    for names in one_of:
        groups.update(dict.fromkeys(names, parser.add_mutually_exclusive_group(required=True)))
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        target = groups.get(field.name, parser)
        flag, help_text = option_name(field.name), field.metadata["help"]
        hint = _without_none(hints[field.name])
        if hint is bool:
            if field.default is not False:
                raise TypeError(f"{cls.__name__}.{field.name}: a switch must default to False")
            target.add_argument(flag, dest=field.name, action="store_true", default=None, help=help_text)
            continue
        if field.default is not dataclasses.MISSING and field.default not in (None, ()):
            shown = ",".join(map(str, field.default)) if isinstance(field.default, tuple) else field.default
            help_text += f" (default: {shown})"
        target.add_argument(
            flag,
            dest=field.name,
            type=field.metadata["parse"] or _parser_for(hint, f"{cls.__name__}.{field.name}"),
            choices=field.metadata["choices"],
            default=None,
            help=help_text,
            required=field.name in required,
        )


def settings_from_args(cls: type, args: argparse.Namespace) -> Any:
    """``cls`` from parsed flags: each flag given sets its field, the others keep their defaults."""
    given = {}
    for field in dataclasses.fields(cls):
        value = getattr(args, field.name, None)
        if value is not None:
            given[field.name] = value
    return cls(**given)


def with_defaults(cls: type, section: Mapping[str, Any]) -> dict[str, Any]:
    """A config section with every setting of the dataclass ``cls`` it leaves out at the field's
    default; keys that are no field of ``cls`` (the workflow's own) are kept as they are."""
    defaults = {
        field.name: field.default
        for field in dataclasses.fields(cls)
        if field.default is not dataclasses.MISSING
    }
    return {**defaults, **section}


def flag_args(settings: Mapping[str, Any]) -> str:
    """A config section as flags: ``--key value`` (shell-quoted) in the section's order, then a bare
    ``--key`` for each true switch, sorted; keys whose value is None or false are left out.

    Switches go last and sorted because that is how the tune rule has always written them:
    Snakemake reruns a job whose params differ from those recorded with its outputs, so another
    order would redo finished tunings.
    """
    values, switches = [], []
    for key, value in settings.items():
        if value is None or value is False:
            continue
        if value is True:
            switches.append(option_name(key))
        elif isinstance(value, (str, int, float)):
            values.append(f"{option_name(key)} {shlex.quote(str(value))}")
        else:
            raise TypeError(f"{key}: a flag takes a single value, not {type(value).__name__}")
    return " ".join(values + sorted(switches))


def option_name(field: str) -> str:
    """The command-line option of a setting: ``--max-steps`` for ``max_steps``."""
    return "--" + field.replace("_", "-")


def _without_none(hint: Any) -> Any:
    """``X`` of ``X | None``; any other annotation as it is."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return hint


def _parser_for(hint: Any, field: str) -> Callable[[str], Any]:
    if hint in (int, float, str):
        return hint
    args = typing.get_args(hint)
    if (
        typing.get_origin(hint) is tuple
        and len(args) == 2
        and args[1] is Ellipsis
        and args[0] in (int, float)
    ):
        return number_list_type(args[0])
    raise TypeError(f"{field}: no command-line reading of {hint}; give setting(parse=...)")
