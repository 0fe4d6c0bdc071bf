"""Refresh the intersphinx inventories that the docs build reads offline.

Run with a network connection: ``python docs/refresh_inventories.py`` downloads
each project's published ``objects.inv`` into ``docs/_inventories/`` (commit the
result).  The build itself never reaches the network: a project whose
inventory is missing there gets no links (and its targets are not checked).

The committed snapshot was taken from Debian 12's documentation packages
(python3.11-doc 3.11.2, python-scipy-doc 1.10.1, python-sympy-doc 1.11.1),
whose ``objects.inv`` files are these projects' own Sphinx builds; Debian has
no numpy documentation package, so numpy has no snapshot until this script is
run online.
"""

from __future__ import annotations

import pathlib
import sys
import urllib.request
import zlib

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from conf import INVENTORIES  # noqa: E402  (one list of projects: conf.py's)


def check(data: bytes, name: str) -> None:
    """A Sphinx v2 inventory: four header lines, then zlib."""
    lines = data.split(b"\n", 4)
    if len(lines) < 5 or lines[0] != b"# Sphinx inventory version 2":
        raise ValueError(f"{name}: not a Sphinx v2 inventory")
    zlib.decompress(lines[4])


def main() -> int:
    target = HERE / "_inventories"
    target.mkdir(exist_ok=True)
    failed = []
    for name, url in INVENTORIES.items():
        try:
            with urllib.request.urlopen(f"{url}/objects.inv", timeout=30) as response:
                data = response.read()
            check(data, name)
        except (OSError, ValueError, zlib.error) as exc:
            print(f"{name}: kept the old snapshot ({exc})")
            failed.append(name)
            continue
        (target / f"{name}.inv").write_bytes(data)
        print(f"{name}: {len(data)} bytes from {url}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
