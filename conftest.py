"""pytest configuration for the whole repository."""

import os
import sys
import zlib

import numpy as np
import pytest

# the shared geometry cases and oracles (tests/cases.py) are imported by name
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "tests"))

# The docs' code examples run as doctests (*.rst); the Sphinx configuration,
# extension and build outputs are not test modules.
collect_ignore = ["docs/conf.py", "docs/_ext", "docs/_build", "docs/generated"]


@pytest.fixture
def rng(request):
    """A generator seeded from the test id: each test's draws are independent of test order."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


# Doctests of modules whose optional package is missing (the dependency floors' venv) skip.
_OPTIONAL = {"_torch.py": "torch", "plot.py": "matplotlib", "_dask.py": "dask",
             "sphinxext.py": "sphinx"}


def pytest_collection_modifyitems(config, items):
    import importlib.util
    for item in items:
        needed = _OPTIONAL.get(os.path.basename(str(item.fspath)))
        if needed and type(item).__name__ == "DoctestItem" and \
                importlib.util.find_spec(needed) is None:
            item.add_marker(pytest.mark.skip(reason=f"needs {needed}"))
