"""YAML recipes with command-line overrides: one schema for every script.

A recipe has one YAML section per dataclass (`model:`, `data:`, ...). `parse_recipe` reads `--config FILE`, uses
its values as defaults, and lets any field be overridden as `--field value` (trl's `TrlParser` does the same).
Field names are unique across sections, so the command line needs no section prefix. A key the schema does not
know is an error that lists the keys it does know.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser


class RecipeError(ValueError):
    """A recipe that does not fit the schema; the message names the file, section and key."""


def load_recipe_file(path: str | Path, sections: dict[str, type]) -> dict[str, Any]:
    """Reads a recipe and flattens its sections into `{field: value}`, checking every key against the schema."""
    path = Path(path)
    if not path.exists():
        raise RecipeError(f"Recipe {path} does not exist.")
    content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(content, dict):
        raise RecipeError(f"Recipe {path} must be a mapping of sections ({', '.join(sections)}).")
    flat: dict[str, Any] = {}
    for section, values in content.items():
        if section not in sections:
            raise RecipeError(f"{path}: unknown section '{section}'; this script reads {sorted(sections)}.")
        known = {f.name for f in dataclasses.fields(sections[section])}
        hints = typing.get_type_hints(sections[section])
        for key, value in (values or {}).items():
            if key not in known:
                raise RecipeError(f"{path}: section '{section}' has no field '{key}'; its fields are {sorted(known)}.")
            # YAML reads `30` as an int; a float field gets a float, as it would from the command line.
            if isinstance(value, int) and not isinstance(value, bool) and float in typing.get_args(hints[key]) + (hints[key],):
                value = float(value)
            flat[key] = value
    return flat


def parse_recipe(
    sections: dict[str, type],
    argv: list[str] | None = None,
    aliases: dict[str, str] | None = None,
    description: str | None = None,
) -> tuple[Any, ...]:
    """Returns one dataclass instance per section, in the order of `sections`.

    `aliases` maps a script's own flag names to fields (`{"output_dir": "prepared_dir"}`), so each script keeps
    the flags its users know while the recipe keeps one name per field.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    for alias, target in (aliases or {}).items():
        argv = [f"--{target}" if arg == f"--{alias}" else arg.replace(f"--{alias}=", f"--{target}=", 1) for arg in argv]

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)

    parser = HfArgumentParser(list(sections.values()), description=description)
    parser.add_argument("--config", default=None, help="YAML recipe whose values become the defaults.")
    if known.config:
        defaults = load_recipe_file(known.config, sections)
        parser.set_defaults(**defaults)
    *instances, _ = parser.parse_args_into_dataclasses(args=rest + (["--config", known.config] if known.config else []))
    return tuple(instances)
