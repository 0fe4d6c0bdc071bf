"""The README's Python examples are doctests: each shown output is checked."""

import doctest
import importlib.util
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def _blocks():
    """(line number, text) of every fenced Python block, in order."""
    text = README.read_text()
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1))
            for m in re.finditer(r"```(?:python|pycon|py)\n(.*?)```", text, flags=re.S)]


def test_readme_python_blocks_are_doctests():
    blocks = _blocks()
    assert blocks
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    namespace = {}  # the blocks build on each other, as a reader runs them
    for lineno, block in blocks:
        optional = re.findall(r"import (dask|torch|matplotlib)\b", block)
        if any(importlib.util.find_spec(name) is None for name in optional):
            continue  # an optional extra that is not installed (e.g. the floors' venv)
        test = parser.get_doctest(block, namespace, f"README.md:{lineno}", str(README),
                                  lineno)
        # a block without prompts would be skipped by doctest: every block has outputs
        assert any(ex.want for ex in test.examples), f"README.md:{lineno} shows no output"
        test.globs = namespace  # get_doctest copies the namespace: share it
        failures, _ = runner.run(test, clear_globs=False)
        assert failures == 0, f"README.md block at line {lineno}: see the report above"
