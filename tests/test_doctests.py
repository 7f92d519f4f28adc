"""The examples in docstrings are run, so they stay true: every module that holds one is found and tested."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import chatterbox_latam

PACKAGE = Path(chatterbox_latam.__file__).parent
WITH_EXAMPLES = sorted(
    "chatterbox_latam." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    for path in PACKAGE.rglob("*.py") if ">>> " in path.read_text(encoding="utf-8")
)


def test_examples_are_found():
    assert {"chatterbox_latam.data.text", "chatterbox_latam.data.collator"} <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("module", WITH_EXAMPLES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
