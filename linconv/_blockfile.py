"""Arrays on disk block by block, read and written in place: the out-of-core solvers' iterates.

Each block's samples are contiguous in one file (C order inside the block, the blocks
in C order of the block grid, every block in a slot of the full block's size), so a
block is one read or write.  zarr writes every chunk to a new file and
renames it (an atomic write); on ext4 a new 4 MiB file costs 7-12 ms, an overwrite in
place 0.2 ms, and a CG iteration writes five blocks per block of the image.  A
solve's files are reused from iteration to iteration (:class:`FilePool`), each once no
array reads it any more.
"""

from __future__ import annotations

import math
import os
import uuid

import numpy as np


class BlockFile:
    """An array of `shape` and regular `chunks` (the block shape) in the file at `path`.

    Reads take any region of slices (a block at a time: the rows of each block it meets);
    writes take exactly one block.  Pickles as its path and layout, so that tasks on
    other processes (dask.distributed) read and write the same file.
    """

    def __init__(self, path: str, shape, chunks, dtype):
        self.path = path
        self.shape = tuple(int(n) for n in shape)
        self.chunks = tuple(int(c) for c in chunks)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.grid = tuple(max(-(-n // c), 1) for n, c in zip(self.shape, self.chunks))
        self.slot = math.prod(self.chunks) * self.dtype.itemsize
        self.token = uuid.uuid4().hex  # a new identity for every version written

    @property
    def nbytes(self) -> int:
        return self.slot * math.prod(self.grid)

    def create(self) -> "BlockFile":
        """Make the file (sparse) if it does not exist, or check its size if it does."""
        if os.path.exists(self.path) and os.path.getsize(self.path) == self.nbytes:
            return self
        with open(self.path, "wb") as f:
            f.truncate(self.nbytes)
        return self

    def __dask_tokenize__(self):
        return self.token

    def __repr__(self):
        return f"<BlockFile {self.shape} {self.dtype} in blocks {self.chunks}: {self.path}>"

    def _block(self, index):
        """Shape and byte offset of the block at `index` of the grid."""
        shape = tuple(min(c, n - i * c) for i, c, n in zip(index, self.chunks, self.shape))
        return shape, self.slot * int(np.ravel_multi_index(index, self.grid))

    def _region(self, region) -> tuple[tuple[slice, ...], tuple[int, ...]]:
        """`region` (slices of step 1 and integers, one per axis, or an Ellipsis) as slices,
        and the axes of its integers."""
        region = region if isinstance(region, tuple) else (region,)
        if any(r is Ellipsis for r in region):
            at = next(i for i, r in enumerate(region) if r is Ellipsis)
            region = region[:at] + (slice(None),) * (self.ndim - len(region) + 1) + \
                region[at + 1:]
        if len(region) != self.ndim:
            raise IndexError(f"BlockFile takes {self.ndim} indices; got {region!r}")
        out, integers = [], []
        for axis, (r, n) in enumerate(zip(region, self.shape)):
            if isinstance(r, (int, np.integer)):
                if not -n <= r < n:
                    raise IndexError(f"index {r} is out of bounds for axis {axis} of {n}")
                integers.append(axis)
                r = slice(int(r) % n, int(r) % n + 1)
            if not isinstance(r, slice):
                raise IndexError(f"BlockFile takes slices and integers; got {region!r}")
            start, stop, step = r.indices(n)
            if step != 1:
                raise IndexError("BlockFile slices must have step 1")
            out.append(slice(start, max(start, stop)))
        return tuple(out), tuple(integers)

    def __getitem__(self, region) -> np.ndarray:
        region, integers = self._region(region)
        return self._read(region).squeeze(integers) if integers else self._read(region)

    def _read(self, region) -> np.ndarray:
        out = np.empty(tuple(r.stop - r.start for r in region), self.dtype)
        if out.size == 0:
            return out
        ranges = [range(r.start // c, (r.stop - 1) // c + 1) for r, c in zip(region, self.chunks)]
        with open(self.path, "rb", buffering=0) as f:
            for index in np.ndindex(*(len(g) for g in ranges)):
                index = tuple(g[i] for g, i in zip(ranges, index))
                shape, offset = self._block(index)
                first = [i * c for i, c in zip(index, self.chunks)]
                # the block's rows that the region reads (contiguous), then the other axes
                lo = [max(r.start - f, 0) for r, f in zip(region, first)]
                hi = [min(r.stop - f, s) for r, f, s in zip(region, first, shape)]
                row = math.prod(shape[1:]) * self.dtype.itemsize
                target = out[tuple(slice(f + a - r.start, f + b - r.start)
                                   for f, a, b, r in zip(first, lo, hi, region))]
                whole_rows = not any(lo[1:]) and tuple(hi[1:]) == shape[1:]
                # the rows straight into `out` where they are contiguous there: no copy
                rows = target if whole_rows and target.flags.c_contiguous else \
                    np.empty((hi[0] - lo[0],) + shape[1:], self.dtype)
                f.seek(offset + lo[0] * row)
                if f.readinto(rows.data.cast("B")) != rows.nbytes:
                    raise OSError(f"short read from {self.path}")
                if rows is not target:
                    target[...] = rows[(slice(None),) + tuple(slice(a, b) for a, b in
                                                             zip(lo[1:], hi[1:]))]
        return out

    def __setitem__(self, region, value):
        region, _ = self._region(region)
        index = tuple(r.start // c for r, c in zip(region, self.chunks))
        shape, offset = self._block(index)
        if any(r.start != i * c or r.stop - r.start != s
               for r, i, c, s in zip(region, index, self.chunks, shape)):
            raise ValueError(f"BlockFile writes whole blocks of {self.chunks}; got {region}")
        value = np.ascontiguousarray(np.broadcast_to(value, shape), self.dtype)
        with open(self.path, "r+b", buffering=0) as f:
            f.seek(offset)
            if f.write(value.data.cast("B")) != value.nbytes:
                raise OSError(f"short write to {self.path}")


class FilePool:
    """The files of a solve's iterates in the directory `root`: a file no array reads any
    more (:meth:`release`) is written again by the next array of its layout
    (:meth:`take`), in place; :meth:`close` deletes the free files, and releases after it
    delete theirs, then `root` once it is empty."""

    def __init__(self, root: str):
        self.root, self.free, self.closed, self.count = root, {}, False, 0

    def take(self, shape, chunks, dtype) -> BlockFile:
        key = (tuple(shape), tuple(chunks), np.dtype(dtype).str)
        free = self.free.get(key)
        if free:
            path = free.pop()
        else:
            self.count += 1
            path = os.path.join(self.root, f"iterate-{self.count}.bin")
        return BlockFile(path, shape, chunks, dtype).create()

    def release(self, path, key):
        if self.closed:
            _remove(path, self.root)
        else:
            self.free.setdefault(key, []).append(path)

    def close(self):
        self.closed = True
        for paths in self.free.values():
            for path in paths:
                _remove(path, self.root)
        self.free = {}


def _remove(path, root):
    """Delete the file at `path`, and the directory `root` if that leaves it empty."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    try:
        os.rmdir(root)
    except OSError:  # other files are still inside
        pass
