"""The one place for other packages' internals (`chatterbox_latam.compat`): every registered reach is still where it
was checked (a failure names the installed version), no other module reaches into another package's private names,
and the conditioning shim is re-entrant."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatterbox_latam import compat
from chatterbox_latam.compat import SHIMS, CompatError, probe, register_internal, shim

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "chatterbox_latam"
SCANNED = sorted({*PACKAGE.rglob("*.py"), ROOT / "space" / "app.py", *(ROOT / "benchmarks").glob("*.py")}
                 - {PACKAGE / "compat.py"})


@pytest.mark.parametrize("name", sorted(SHIMS))
def test_internal_is_where_it_was_checked(name):
    probe(name)


def test_compat_imports_none_of_the_packages_it_reaches_into():
    code = ("import sys, chatterbox_latam.compat; "
            "print(sorted(m for m in ('torch', 'transformers', 'chatterbox') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("internal", ["torch:_gone_in_this_test", "torch.nn.modules.module:Module()._gone_in_this_test",
                                      "torch.gone_in_this_test:anything"])
def test_a_moved_internal_fails_with_the_installed_and_checked_versions(monkeypatch, internal):
    monkeypatch.setattr(compat, "SHIMS", dict(SHIMS))

    @shim("torch", internal, checked="torch 0.0.1", why="a test")
    def moved():
        """Reaches nothing: registered on an internal that is not there."""

    with pytest.raises(CompatError) as raised:
        compat.probe("moved")
    message = str(raised.value)
    assert f"torch {importlib.metadata.version('torch')}" in message
    assert "checked against torch 0.0.1" in message and internal in message and "compat.moved" in message


def test_a_moved_override_names_the_class_that_overrides_it(monkeypatch):
    monkeypatch.setattr(compat, "SHIMS", dict(SHIMS))
    entry = register_internal("transformers", "transformers.trainer:Trainer._gone_in_this_test", "transformers 0.0.1",
                              "a test", used_in="chatterbox_latam.training.trainer.ChatterboxTrainer")
    with pytest.raises(CompatError, match=rf"transformers {importlib.metadata.version('transformers')}: .*"
                                          r"ChatterboxTrainer was checked against transformers 0\.0\.1"):
        compat.probe(entry.name)


def test_every_registered_override_is_overridden_there():
    """A registered override names a method its class really overrides (the registry is not stale)."""
    for entry in (s for s in SHIMS.values() if s.used_in):
        module, _, cls = entry.used_in.rpartition(".")
        method = entry.internal.rpartition(".")[2]
        assert method in vars(getattr(importlib.import_module(module), cls)), entry


# -- the reaches left outside compat.py ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Reach:
    """A private name of another package that a project file uses."""

    where: str
    """file:line"""
    what: str
    internal: str = ""
    """For a reach judged on a class (an override, a `self._x` its foreign base has): `module:Class.name`."""
    cls: str = ""
    """That project class, as `module.Class`."""


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _named_attribute(node: ast.AST) -> tuple[ast.AST, str] | None:
    """(base, name) for `base._name` and for `getattr(base, "_name")`-like calls with a literal name."""
    if isinstance(node, ast.Attribute) and _private(node.attr):
        return node.value, node.attr
    if isinstance(node, ast.Call) and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
        function = node.func
        name = function.id if isinstance(function, ast.Name) else getattr(function, "attr", "")
        if name in ("getattr", "setattr", "hasattr", "delattr", "__setattr__", "__getattribute__", "__delattr__") \
                and isinstance(node.args[1].value, str) and _private(node.args[1].value):
            return node.args[0], node.args[1].value
    return None


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT) if ROOT in path.parents else path}:{line}"


def _module_name(path: Path) -> str | None:
    if PACKAGE not in path.parents:
        return None
    return ".".join(("chatterbox_latam", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")


def _foreign_owner(cls: type, name: str) -> type | None:
    """The first class in `cls`'s MRO from another package that has `name` (as compat's probe finds it)."""
    for klass in cls.__mro__[1:]:
        if klass.__module__.split(".")[0] in ("chatterbox_latam", "builtins"):
            continue
        if compat._instances_have(klass, name):
            return klass
    return None


def _class_reaches(path: Path, tree: ast.Module, judged: set[int]) -> list[Reach]:
    """Reaches judged on the project's top-level classes: a private method of a foreign base overridden or called
    through `super()`, or a `self._x` / `cls._x` that a foreign base has. Each such node is marked `judged` (a
    `self._x` the foreign bases do not have is the class's own)."""
    module = _module_name(path)
    found = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or not node.bases or module is None:
            continue
        cls = getattr(importlib.import_module(module), node.name)
        where = f"{module}.{node.name}"
        for inner in ast.walk(node):
            if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)) and inner in node.body \
                    and _private(inner.name):
                name, kind = inner.name, "overrides"
            elif isinstance(inner, ast.Attribute) and _private(inner.attr) and (
                    isinstance(inner.value, ast.Name) and inner.value.id in ("self", "cls")):
                name, kind = inner.attr, "uses"
            elif isinstance(inner, ast.Attribute) and _private(inner.attr) and isinstance(inner.value, ast.Call) \
                    and getattr(inner.value.func, "id", "") == "super":
                name, kind = inner.attr, "overrides"
            else:
                continue
            judged.add(id(inner))
            owner = _foreign_owner(cls, name)
            if owner is not None:
                internal = f"{owner.__module__}:{owner.__qualname__}.{name}"
                found.append(Reach(_where(path, inner.lineno), f"{kind} {internal}",
                                   internal if kind == "overrides" else "", where))
    return found


def _defined(tree: ast.Module, judged: set[int]) -> set[str]:
    """The private names a file defines: functions, classes, variables, import aliases and `self._x` / `cls._x`
    attributes, less the overrides (judged on their class)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and id(node) not in judged:
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("chatterbox_latam")):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.alias) and node.asname:
            names.add(node.asname)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and id(node) not in judged \
                and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            names.add(node.attr)
    return {name for name in names if _private(name)}


def private_reaches(files: list[Path]) -> list[Reach]:
    """The uses of other packages' private names in `files`. The rule:
    - `from <not this project> import _x` is a reach;
    - on a project class with bases, a private method of a foreign base that it overrides (or calls through
      `super()`), and a `self._x` / `cls._x` that a foreign base has (as compat's probe finds one), are reaches;
    - any other `something._x` (or `getattr(something, "_x")`) is a reach unless the project itself defines `_x`
      somewhere (a function, class, variable or `self._x` attribute of its own): a private name the project never
      defines belongs to someone else. (The objects' types are not known: `other._x` on another package's object
      that happens to share a private name the project defines goes unseen.)"""
    trees = {path: ast.parse(path.read_text(encoding="utf-8"), str(path)) for path in files}
    judged: set[int] = set()
    reaches = []
    for path, tree in trees.items():
        reaches += _class_reaches(path, tree, judged)
    own = set().union(*(_defined(tree, judged) for tree in trees.values()))
    for path, tree in trees.items():
        for node in ast.walk(tree):
            where = _where(path, getattr(node, "lineno", 0))
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] != "chatterbox_latam":
                reaches += [Reach(where, f"imports {node.module}.{a.name}") for a in node.names if _private(a.name)]
            named = _named_attribute(node)
            if named and id(node) not in judged and named[1] not in own:
                reaches.append(Reach(where, f"{ast.unparse(named[0])}.{named[1]}"))
    return reaches


def test_no_module_but_compat_reaches_into_private_names():
    """Every reach into another package's private names is in compat.py, but the Trainer hooks a project class
    overrides, which must stay on the class: those are exactly the overrides compat registers (and probes)."""
    reaches = private_reaches(SCANNED)
    registered = {(s.internal, s.used_in) for s in SHIMS.values() if s.used_in}
    stray = [r for r in reaches if (r.internal, r.cls) not in registered]
    assert not stray, ("private names of other packages used outside chatterbox_latam/compat.py; move each into a "
                       "shim there (`@shim` with the versions checked), or register an override "
                       "(`register_internal`):\n" + "\n".join(f"{r.where}: {r.what}" for r in stray))
    assert {(r.internal, r.cls) for r in reaches} == registered


def test_the_reach_rule_finds_what_it_should(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text(
        "import torch\n"
        "from transformers.foo import _hidden\n"
        "from .ours import _helper\n"
        "_CACHE = {}\n"
        "def _own(x):\n"
        "    return x._cache_key\n"
        "class Thing:\n"
        "    def __init__(self):\n"
        "        self._state = 1\n"
        "    def use(self, other):\n"
        "        return torch._kernel(other._state, getattr(other, '_secret'), _own(self._state), _CACHE, _helper)\n",
        encoding="utf-8")
    found = {(r.where.rpartition(":")[2], r.what) for r in private_reaches([source])}
    assert found == {("2", "imports transformers.foo._hidden"), ("6", "x._cache_key"), ("11", "torch._kernel"),
                     ("11", "other._secret")}


# -- the conditioning shim, from two threads -----------------------------------------------------------------------
def _values(conds) -> dict:
    """A voice's tensors (T3's conditioning and S3Gen's reference), copied."""
    values = {**{f"t3.{k}": v for k, v in vars(conds.t3).items()}, **{f"gen.{k}": v for k, v in conds.gen.items()}}
    return {k: v.clone() if hasattr(v, "clone") else v for k, v in values.items()}


def _same(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)


def test_two_voices_conditioned_at_once_each_get_their_own(tiny_checkpoint, corpus, monkeypatch):
    """`conditionals_of` runs upstream's `prepare_conditionals`, which stores the voice on the model, on a shallow
    copy: two threads conditioning two voices on one model at the same time each get their own voice, the one each
    gets alone, and the model's default voice stays as it was. Both threads pass a barrier before they start and
    another inside upstream's method (after the speaker embedding, just before it stores the voice), so both are
    in it at once."""
    import soundfile as sf

    from chatterbox_latam.synthesis.tts import ChatterboxLatamTTS

    model = ChatterboxLatamTTS.from_pretrained(tiny_checkpoint)
    speakers = sorted(p for p in (corpus / "audio").iterdir() if p.is_dir())[:3]
    *references, default_reference = [sf.read(str(sorted(s.glob("*.wav"))[0]), dtype="float32") for s in speakers]
    if model.tts.conds is None:  # the tiny checkpoint has no default voice: a third speaker's
        monkeypatch.setattr(model.tts, "conds", model.voice(default_reference))
    alone = [_values(model.voice(reference)) for reference in references]
    assert not _same(*alone)
    default, default_values = model.tts.conds, _values(model.tts.conds)

    start, inside = threading.Barrier(2, timeout=60), threading.Barrier(2, timeout=60)
    embeds = model.tts.ve.embeds_from_wavs

    def embeds_together(*args, **kwargs):
        result = embeds(*args, **kwargs)
        inside.wait()
        return result

    monkeypatch.setattr(model.tts.ve, "embeds_from_wavs", embeds_together)
    together, errors = [None, None], []

    def condition(i):
        try:
            start.wait()
            together[i] = model.voice(references[i])
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=condition, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert all(_same(_values(t), a) for t, a in zip(together, alone))
    assert model.tts.conds is default and _same(_values(default), default_values)


def test_every_shim_says_what_and_why():
    """Each function shim says what it does (its docstring) and why the public API does not do (`why`)."""
    for entry in SHIMS.values():
        assert entry.why and entry.checked, entry
        if not entry.used_in:
            assert inspect.getdoc(getattr(compat, entry.name)), entry.name
