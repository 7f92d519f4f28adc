"""Recipes and command lines -> configuration dataclasses: one parser for every script.

A recipe is YAML with one section per stage (`model:`, `data:`, `training:`, `output:`, `logging:`,
`segmentation:`); each section names the dataclass that reads it, and several sections may feed one dataclass (the
training config, a `transformers.TrainingArguments`, reads `training:`, `output:` and `logging:`). `parse_recipe`
reads `--config FILE`, uses its values as defaults and lets any field be overridden as `--field value`, as trl's
`TrlParser` does. Field names are unique across the dataclasses a script parses, so the command line needs no
section prefix. A key the schema does not know is an error that lists the keys it does know.

A dataclass may declare `aliases`, a class-level `{name: field}` mapping: the names recipes have always used
(`batch_size` for the Trainer's `per_device_train_batch_size`, `checkpoint_dir` for `output_dir`...). An alias works
in the recipe and on the command line; an alias `section.key` is a field that older recipes set in another section
(the data config's `training.max_audio_length`). Importing this module does not import torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any

import yaml

SECTION_NAMES = ("model", "data", "training", "output", "logging", "segmentation", "evaluation", "generation", "merge",
                 "push")
"""Every section a recipe may hold; each command reads its own and skips the others."""


class RecipeError(ValueError):
    """A recipe that does not fit the schema; the message names the file, section and key."""


def aliases_of(cls: type) -> dict[str, str]:
    """A dataclass's `{alias: field}` mapping (empty when it declares none)."""
    return dict(getattr(cls, "aliases", None) or {})


def _classes(sections: dict[str, type]) -> list[type]:
    """The distinct dataclasses of `sections`, in order of first appearance."""
    return list(dict.fromkeys(sections.values()))


def _field_types(classes: list[type]) -> dict[str, Any]:
    """`{field: type hint}` over every class; a name two classes share is an error in the schema itself."""
    types: dict[str, Any] = {}
    owners: dict[str, type] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init:
                if f.name in owners:
                    raise TypeError(f"field {f.name!r} is declared by {owners[f.name].__name__} and {cls.__name__}, "
                                    "which are parsed together: rename one")
                owners[f.name], types[f.name] = cls, hints[f.name]
    return types


def _as_float(value: Any, hint: Any) -> Any:
    """YAML reads `30` as an int; a float field gets a float, as it would from the command line."""
    if isinstance(value, int) and not isinstance(value, bool) and float in (*typing.get_args(hint), hint):
        return float(value)
    return value


def load_recipe_file(path: str | Path, sections: dict[str, type]) -> dict[str, Any]:
    """Reads a recipe and flattens its sections into `{field: value}`, checking every key against the schema."""
    path = Path(path)
    if not path.exists():
        raise RecipeError(f"Recipe {path} does not exist.")
    content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(content, dict):
        raise RecipeError(f"Recipe {path} must be a mapping of sections ({', '.join(sections)}).")
    classes = _classes(sections)
    types = _field_types(classes)
    # "section.key" aliases: a field of one section that older recipes set in another (`training: max_audio_length`)
    placed = {alias: target for cls in classes for alias, target in aliases_of(cls).items() if "." in alias}
    flat: dict[str, Any] = {}
    for section, values in content.items():
        if section not in SECTION_NAMES and section not in sections:
            raise RecipeError(f"{path}: unknown section '{section}'; the sections are {sorted(SECTION_NAMES)}.")
        if not isinstance(values, dict) and values is not None:
            raise RecipeError(f"{path}: section '{section}' must be a mapping of field: value.")
        cls = sections.get(section)
        known = {f.name for f in dataclasses.fields(cls) if f.init} if cls else set()
        aliases = aliases_of(cls) if cls else {}
        for key, value in (values or {}).items():
            name = placed.get(f"{section}.{key}") or aliases.get(key, key)
            if cls is None and f"{section}.{key}" not in placed:
                continue  # another script's section of the same recipe
            if name not in known and f"{section}.{key}" not in placed:
                shown = sorted(known | {a for a in aliases if "." not in a})
                raise RecipeError(f"{path}: section '{section}' has no field '{key}'; its fields are {shown}.")
            if name in flat and flat[name] != value:
                raise RecipeError(f"{path}: '{name}' is set twice ({flat[name]!r} and {value!r}, the second as "
                                  f"'{section}: {key}'): keep one.")
            flat[name] = _as_float(value, types[name])
    return flat


def _rename_flags(argv: list[str], aliases: dict[str, str]) -> list[str]:
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if name.startswith("--") and name[2:] in aliases:
            arg = f"--{aliases[name[2:]]}{eq}{value}"
        out.append(arg)
    return out


def parse_recipe(
    sections: dict[str, type],
    argv: list[str] | None = None,
    aliases: dict[str, str] | None = None,
    description: str | None = None,
    epilog_extra: str | None = None,
) -> tuple[Any, ...]:
    """Returns one dataclass instance per distinct dataclass of `sections`, in their order.

    `aliases` maps a script's own flag names to fields (`{"output_dir": "prepared_dir"}`), so each script keeps
    the flags its users know while the recipe keeps one name per field; the dataclasses' own `aliases` apply too.
    """
    from transformers import HfArgumentParser

    classes = _classes(sections)
    names = {alias: target for cls in classes for alias, target in aliases_of(cls).items() if "." not in alias}
    names.update(aliases or {})
    argv = _rename_flags(list(sys.argv[1:] if argv is None else argv), names)

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)

    epilog = [epilog_extra] if epilog_extra else []
    if names:
        epilog.append("Also accepted, in recipes and here: " + ", ".join(
            f"--{a} (= --{t})" for a, t in sorted(names.items()) if a != t))
    parser = HfArgumentParser(classes, description=description, epilog="\n\n".join(epilog) or None,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="YAML recipe whose values become the defaults.")
    if known.config:
        parser.set_defaults(**load_recipe_file(known.config, sections))
    *instances, _ = parser.parse_args_into_dataclasses(args=rest + (["--config", known.config] if known.config else []))
    return tuple(instances)


def parse_command(commands: dict[str, dict[str, type]], argv: list[str] | None = None,
                  description: str | None = None, prog: str | None = None) -> tuple[str, tuple[Any, ...]]:
    """For commands with subcommands (`sync push|watch|pull`): the first argument names the subcommand, the rest is
    parsed by `parse_recipe` with its sections. Returns (subcommand, instances)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in commands:
        usage = (f"usage: {prog or Path(sys.argv[0]).name} {{{' | '.join(commands)}}} [--help] ...\n\n"
                 f"{description or ''}\n`COMMAND --help` lists the command's options.")
        if argv and argv[0] in ("-h", "--help"):
            print(usage)
            raise SystemExit(0)
        raise SystemExit(usage if not argv else f"{argv[0]!r} is no command.\n{usage}")
    return argv[0], parse_recipe(commands[argv[0]], argv[1:], description=description)
