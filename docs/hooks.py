"""mkdocs hooks (mkdocs.yml `hooks:`): the configuration reference is generated from the config dataclasses.

`extra.config_reference` in mkdocs.yml is the one list of what the reference documents: a title per recipe section
or script, and the dotted name of the dataclass that reads it. A page holding the line `<!-- config-reference -->`
gets, at build time, one section per entry: the class docstring's first paragraph and a table of its fields with
their type, default and `help` text. The tables are read from the code on every build, so they cannot drift from
it: a field without a help text, or a name that does not import, fails the build with a message saying which.

For a subclass of `transformers.TrainingArguments` only the fields the project declares (new ones, or inherited ones
given another default) are listed, with a link to transformers' reference for the rest.
"""

from __future__ import annotations

import dataclasses
import html
import importlib
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from mkdocs.exceptions import PluginError

MARKER = "<!-- config-reference -->"
REPO = Path(__file__).resolve().parents[1]
TRAINING_ARGUMENTS_DOCS = "https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments"

# The working tree's package, whatever else is installed.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    entries = (config.get("extra") or {}).get("config_reference")
    if not entries:
        raise PluginError(f"{page.file.src_path} holds {MARKER} but mkdocs.yml has no extra.config_reference list.")
    return markdown.replace(MARKER, reference(entries))


def reference(entries: list[dict[str, str]]) -> str:
    """The generated sections, one per `{title, class}` entry of `extra.config_reference`."""
    return "\n\n".join(section(entry["title"], load_class(entry["class"]), entry.get("anchor")) for entry in entries)


def load_class(dotted: str) -> type:
    module_name, _, name = dotted.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise PluginError(f"extra.config_reference in mkdocs.yml names {dotted}, which does not import: {error}. "
                          "Point it at the dataclass's new place.") from error
    if not dataclasses.is_dataclass(cls):
        raise PluginError(f"extra.config_reference names {dotted}, which is not a dataclass.")
    return cls


def section(title: str, cls: type, anchor: str | None = None) -> str:
    anchor = anchor or re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    lines = [f"## {title} {{#{anchor}}}", "", f"`{cls.__module__}.{cls.__qualname__}`: {summary(cls)}", ""]
    fields = [f for f in dataclasses.fields(cls) if f.init]
    base = training_arguments_base(cls)
    if base is not None:
        own = own_field_names(cls, base)
        fields = [f for f in fields if f.name in own]
        lines += [f"The fields the project adds, or gives another default than the Trainer's; every other field of "
                  f"[`transformers.TrainingArguments`]({TRAINING_ARGUMENTS_DOCS}) is accepted too, under its own "
                  f"name and with transformers' default.", ""]
    aliases: dict[str, list[str]] = {}
    for alias, name in (getattr(cls, "aliases", None) or {}).items():  # the names recipes use for a field
        aliases.setdefault(name, []).append(alias)
    unlisted = {alias: name for name, names in aliases.items() if name not in {f.name for f in fields}
                for alias in names}
    if unlisted:
        lines += ["Also accepted in recipes and on the command line: " + ", ".join(
            f"`{alias}` for `{name}`" for alias, name in unlisted.items()) + ".", ""]
    lines += ["| field | type | default | what it sets |", "|---|---|---|---|"]
    for f in fields:
        help_text = f.metadata.get("help")
        if not help_text:
            raise PluginError(f"{cls.__qualname__}.{f.name} has no help text: give it field(metadata={{'help': ...}}).")
        name = f"`{f.name}`"
        if f.name in aliases:
            name += " (also " + ", ".join(f"`{alias}`" for alias in aliases[f.name]) + ")"
        lines.append(f"| {name} | {code(type_name(f.type))} | {code(default(f))} | {cell(help_text)} |")
    return "\n".join(lines)


def summary(cls: type) -> str:
    """The class docstring's first paragraph, on one line."""
    doc = (cls.__doc__ or "").strip()
    if not doc or doc.startswith(cls.__name__ + "("):  # dataclasses write a signature when there is no docstring
        return ""
    return cell(" ".join(doc.split("\n\n")[0].split()), table=False)


def training_arguments_base(cls: type) -> type | None:
    """transformers' `TrainingArguments` when `cls` subclasses it (found by name: transformers is not imported)."""
    for klass in cls.__mro__:
        if klass.__name__ == "TrainingArguments" and klass.__module__.startswith("transformers"):
            return klass
    return None


def own_field_names(cls: type, base: type) -> set[str]:
    """Fields annotated in the classes between `cls` and `base`: new ones, and those given another default."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass in base.__mro__:
            continue
        names.update(vars(klass).get("__annotations__", {}))
    return names


def type_name(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation
    return re.sub(r"\btyping\.", "", getattr(annotation, "__name__", None) or repr(annotation))


def default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        factory = f.default_factory
        if factory.__name__ != "<lambda>" and factory not in (list, dict, tuple, set):
            # A named function computes it where the code runs (e.g. the device): say which, do not run it here.
            return f"{factory.__name__}()"
        value = factory()
    else:
        return "required"
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).removesuffix("\n...\n").strip()


def code(text: str) -> str:
    """Inline code (a `|` inside it splits no table cell); backticks that the text holds fenced with double ones."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def cell(text: str, table: bool = True) -> str:
    """Help text as Markdown: `<`, `>` and `&` as entities (a `<prepared_dir>` is no HTML tag), `*` escaped, and
    `|` escaped in a table; inline code spans are kept as they are."""
    out = []
    for part in re.split(r"(`[^`]*`)", text):
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(part)
        else:
            part = html.escape(part, quote=False).replace("*", "\\*")
            out.append(part.replace("|", "\\|") if table else part)
    return "".join(out)
