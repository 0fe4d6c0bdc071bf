"""Arrays larger than memory: linconv's exact operators and deconvolution on dask.

Every operator factors as ``A = S . C_valid . P`` (see :mod:`linconv._geometry`);
on a chunked array each factor goes where it is exact:

- ``P``, the boundary extension, at the array's *outer* edges only: inside
  the edge blocks' own tasks when the margins copy samples of those blocks
  (the zero boundary always; "reflect", "symmetric", "edge" unless a block
  is thinner than its margin); otherwise with :func:`dask.array.pad` or by
  gathering the margins through the geometry's own extension map
  (numpy.pad's semantics, pads wider than the array included).  dask's
  ``map_overlap(boundary="reflect")`` is numpy's "symmetric", and a
  per-chunk "wrap" wraps each chunk onto itself, so neither is used.
- ``C_valid`` locally: a halo exchange in two tasks per block (the thin
  pieces a block's neighbours read; the block joined with its neighbours'
  pieces), the ``map_overlap(boundary="none")`` of dask in a fifth of its
  tasks, each block running linconv's in-memory engine on a valid-mode
  geometry of the block's size.
- ``S``: output blocks and padded blocks are paired by the kernel's centre tap
  (the :class:`AxisPlan`), and each block computes exactly the global strided
  outputs of its range, so no chunk edge has to sit on a stride multiple and
  nothing is rechunked but the thin boundary margins (joined to the edge
  blocks), blocks too small for their halo (merged with a neighbour) and a
  layer's channel axis (joined into one chunk).  With every
  spatial axis in one chunk, each block runs the in-memory operator itself.

The adjoint runs the factors in reverse: each output block, with the outputs
of its neighbours that reach into it, goes through the in-memory adjoint
(zero insertion and full correlation with the conjugate kernel), and the
margins of the padded domain are folded back onto the edges (``P^H``), in the
edge blocks' tasks where the margins fold onto samples of those blocks.

dask is imported here only; ``import linconv`` never imports this module.
"""

from __future__ import annotations

import functools
import gc
import itertools
import math
import os
import tempfile
import uuid
import weakref
from dataclasses import dataclass

import numpy as np

from ._blockfile import BlockFile, FilePool
from ._engines import FFTEngine, set_workers
from ._geometry import AxisGeometry, Geometry
from ._operator import GeometryOperator, ShapedOperator, _View, operator_dtype
from ._sparse import correlation_weights
from ._validation import as_kernel, as_method, is_dask_array

__all__ = ["AxisPlan", "ChunkedCorrelation", "apply", "convolve_dask", "deconvolve_dask",
           "is_dask_array"]



def _da():
    try:
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - dask is there when a dask array is
        raise ImportError('dask is needed for dask arrays: pip install "linconv[dask]"') from exc
    return da


# -- the plan: chunk edges and halos, from the geometry alone -----------------------
@dataclass(frozen=True)
class AxisPlan:
    """How one spatial axis is cut into blocks, for ``A`` and ``A^H`` alike.

    Output block ``j`` holds outputs ``[o_j, o_{j+1})``; padded block ``j`` holds
    samples ``[p_j, p_{j+1})`` of the padded domain (the input extended by
    ``(lo, hi)``).  The two are paired by the kernel's centre tap, ``o_j =
    ceil((p_j - span // 2) / stride)``, so with stride 1 a "same" output has the
    input's blocks and ``A^H A`` returns the input's blocks.  Blocks are merged
    until every halo comes from the next block only.

    Attributes
    ----------
    out_edges, padded_edges : tuple of int
        Block edges, from 0 to ``n_out`` and to the padded length.
    forward_depth : (int, int)
        Padded samples a block of ``A`` reads before and after its own.
    adjoint_depth : (int, int)
        Outputs before and after an output block that reach into its padded block.
    """

    out_edges: tuple[int, ...]
    padded_edges: tuple[int, ...]
    forward_depth: tuple[int, int]
    adjoint_depth: tuple[int, int]

    @property
    def out_chunks(self) -> tuple[int, ...]:
        return tuple(np.diff(self.out_edges).tolist())

    @property
    def padded_chunks(self) -> tuple[int, ...]:
        return tuple(np.diff(self.padded_edges).tolist())

    @property
    def blocks(self) -> int:
        return len(self.out_edges) - 1

    @classmethod
    def for_input(cls, ax: AxisGeometry, chunks) -> "AxisPlan":
        """The plan keeping the input's blocks (an input edge ``e`` is ``lo + e`` padded)."""
        padded = ax.lo + np.cumsum(chunks)[:-1]
        return cls._build(ax, -(-(padded - ax.span // 2) // ax.stride), padded)

    @classmethod
    def for_output(cls, ax: AxisGeometry, chunks) -> "AxisPlan":
        """The plan keeping the output's blocks."""
        out = np.cumsum(chunks)[:-1]
        return cls._build(ax, out, out * ax.stride + ax.span // 2)

    @staticmethod
    def _reach(ax, out, padded):
        """Halos of the blocks with interior edges `out` / `padded`."""
        o = np.r_[0, out, ax.n_out]
        p = np.r_[0, padded, ax.padded_length]
        s, span = ax.stride, ax.span
        f_lo = p[1:-1] - o[1:-1] * s                          # block starts before its reads
        f_hi = (o[1:-1] - 1) * s + span - p[1:-1]             # reads past the block's end
        first = np.clip(-(-(p[:-1] - span + 1) // s), 0, ax.n_out)   # first output reaching in
        last = np.minimum((p[1:] - 1) // s, ax.n_out - 1)            # last output reaching in
        a_lo = o[1:-1] - first[1:]
        a_hi = last[:-1] - (o[1:-1] - 1)
        top = lambda v: int(max(v.max(initial=0), 0))
        return (top(f_lo), top(f_hi)), (top(a_lo), top(a_hi)), np.diff(o), np.diff(p)

    @classmethod
    def _build(cls, ax: AxisGeometry, out, padded) -> "AxisPlan":
        out, padded = np.asarray(out, dtype=np.int64), np.asarray(padded, dtype=np.int64)
        keep = (out > 0) & (out < ax.n_out) & (padded > 0) & (padded < ax.padded_length)
        out, padded = out[keep], padded[keep]
        keep = np.r_[True, (np.diff(out) > 0) & (np.diff(padded) > 0)] if len(out) else keep[:0]
        out, padded = out[keep], padded[keep]
        while True:
            fwd, adj, o_chunks, p_chunks = cls._reach(ax, out, padded)
            if not len(out):
                return cls((0, ax.n_out), (0, ax.padded_length), (0, 0), (0, 0))
            short = np.flatnonzero((o_chunks < max(adj)) | (p_chunks < max(fwd)))
            if not len(short):
                return cls(tuple(np.r_[0, out, ax.n_out].tolist()),
                           tuple(np.r_[0, padded, ax.padded_length].tolist()), fwd, adj)
            j = int(short[0])  # merge block j with a neighbour: drop one of its edges
            drop = j - 1 if j == len(out) else j
            out, padded = np.delete(out, drop), np.delete(padded, drop)


# -- the operator on chunks ---------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _local_operator(geometry: Geometry, weights_bytes: bytes, shape, dtype: str,
                    method: str) -> GeometryOperator:
    """The in-memory operator of one block's valid-mode geometry (cached per process).

    A pass over regular chunks meets a few block geometries (interior, edges) per
    operator, forward and adjoint.  Their FFT grids are mostly the same (block sizes
    that differ by a halo round up to one fast length), so the FFT engines share
    their block-sized spectra through :func:`_shared_transform_pair`.
    """
    weights = np.frombuffer(weights_bytes, dtype=dtype).reshape(shape)
    op = GeometryOperator(geometry, weights, method, np.dtype(dtype))
    if isinstance(op._engine, FFTEngine):
        op._engine.transform_pair = _shared_transform_pair
    return op


@functools.lru_cache(maxsize=4)
def _cached_transform_pair(kernel_bytes, kernel_shape, dtype, shape, offsets, real, groups):
    kernel = np.frombuffer(kernel_bytes, dtype=dtype).reshape(kernel_shape)
    return FFTEngine.transform_pair(kernel, shape, offsets, real, groups)


def _shared_transform_pair(kernel, shape, offsets, real, groups):
    """:meth:`FFTEngine.transform_pair`, one per process for each kernel and grid."""
    return _cached_transform_pair(kernel.tobytes(), kernel.shape, kernel.dtype.str,
                                  tuple(shape), tuple(offsets), real, groups)


class ChunkedCorrelation:
    """A correlation ``A = S C P`` applied blockwise to dask arrays.

    Holds only sizes and weights (it pickles small, for dask.distributed): the
    geometry, the correlation weights in the compute dtype, and the method each
    block's in-memory engine uses.

    Parameters
    ----------
    geometry : Geometry
    weights : ndarray
        Correlation weights, the kernel's shape (or ``(C_out, C_in // groups, *k)``).
    dtype : dtype
        Compute dtype of the operator.
    method : str
        The in-memory method of every block ("auto": each block picks its fastest).
    """

    def __init__(self, geometry: Geometry, weights: np.ndarray, dtype, method: str = "auto"):
        self.geometry = geometry
        self.dtype = np.dtype(dtype)
        self.weights = np.ascontiguousarray(weights, dtype=self.dtype)
        self.method = method

    @classmethod
    def of(cls, op: ShapedOperator) -> tuple["ChunkedCorrelation", bool, bool]:
        """``(chunked, adjoint, conjugate)`` for a linconv operator or a view of one."""
        adjoint = conjugate = False
        if isinstance(op, _View):
            op, adjoint, conjugate = op.parent, op.adjoint, op.conjugate
        if not isinstance(op, GeometryOperator):
            raise TypeError(f"{type(op).__name__} does not support dask arrays; convolution "
                            "operators, layers and their .T/.H do")
        if hasattr(op, "kernel") and hasattr(op, "correlate"):
            weights = correlation_weights(op.kernel, op.correlate)
        elif hasattr(op, "weight"):
            weights = op.weight
        else:
            raise TypeError(f"{type(op).__name__} does not support dask arrays")
        return cls(op.geometry, weights, op.dtype, op._method_asked), adjoint, conjugate

    def __repr__(self):
        return (f"<ChunkedCorrelation {self.geometry.input_shape} -> "
                f"{self.geometry.output_shape}, dtype={self.dtype}>")

    def __reduce__(self):
        return (type(self), (self.geometry, self.weights, self.dtype, self.method))

    def _local(self, geometry: Geometry) -> GeometryOperator:
        return _local_operator(geometry, self.weights.tobytes(), self.weights.shape,
                               self.dtype.str, self.method)

    # -- layout ----------------------------------------------------------------
    def _lead(self, x, shape) -> int:
        """Number of leading (batch) axes of `x`, whose trailing axes must be `shape`."""
        nd = len(shape)
        if x.ndim < nd or tuple(x.shape[x.ndim - nd:]) != tuple(shape):
            raise ValueError(f"`x` must have shape (*batch, {', '.join(map(str, shape))}); "
                             f"got {x.shape}")
        return x.ndim - nd

    def _prepare(self, x, shape, conjugate):
        if x.dtype.kind not in "biufc":
            raise TypeError(f"`x` must be a numeric array; got dtype {x.dtype}")
        lead = self._lead(x, shape)
        x = x.astype(np.result_type(x.dtype, self.dtype))
        if conjugate and x.dtype.kind == "c":
            x = x.conj()
        if self.geometry.channels is not None and len(x.chunks[lead]) > 1:
            x = x.rechunk({lead: -1})  # the channel axis in one chunk
        return x, lead

    # -- A = S C P -------------------------------------------------------------
    def forward(self, x):
        """``A x`` for a dask array ``x`` of shape ``(*batch, *input_shape)``."""
        return self._forward(*self._prepare(x, self.geometry.input_shape, False))

    def adjoint(self, y, conjugate: bool = False):
        """``A^H y`` (``A^T y`` with `conjugate`) for ``y`` of shape ``(*batch, *output_shape)``."""
        z = self._adjoint(*self._prepare(y, self.geometry.output_shape, conjugate))
        return z.conj() if conjugate and z.dtype.kind == "c" else z

    def forward_conj(self, x):
        """``conj(A) x``."""
        y = self._forward(*self._prepare(x, self.geometry.input_shape, True))
        return y.conj() if y.dtype.kind == "c" else y

    def _spatial0(self, lead: int) -> int:
        """Array axis of the first spatial axis."""
        return lead + (self.geometry.channels is not None)

    def _whole(self, x, s0, shape, adjoint):
        """Spatial axes in one block each: every block is the in-memory operator itself."""
        da = _da()
        lead = s0 - (self.geometry.channels is not None)
        chunks = x.chunks[:lead] + tuple((n,) for n in shape)
        dtype = np.result_type(x.dtype, self.dtype)
        return da.map_blocks(functools.partial(_whole_block, self, adjoint), x, chunks=chunks,
                             dtype=dtype, meta=np.empty((0,) * x.ndim, dtype))

    def _forward(self, x, lead):
        g = self.geometry
        s0 = self._spatial0(lead)
        if all(len(c) == 1 for c in x.chunks[s0:]):
            return self._whole(x, s0, g.output_shape, False)
        plans = tuple(AxisPlan.for_input(ax, x.chunks[s0 + a]) for a, ax in enumerate(g.axes))
        depth = {s0 + a: p.forward_depth for a, p in enumerate(plans)}
        channel = ((g.channels.out_channels,),) if g.channels else ()
        chunks = x.chunks[:lead] + channel + tuple(p.out_chunks for p in plans)
        if self._edges_local(plans, x.chunks[s0:], forward=True):
            block = functools.partial(_forward_block, self, plans, s0, True)
            return _halo_map(block, x, depth, chunks, x.dtype)
        xp = self._extend(x, s0)
        xp = _rechunk(xp, xp.chunks[:s0] + tuple(p.padded_chunks for p in plans))
        block = functools.partial(_forward_block, self, plans, s0, False)
        return _halo_map(block, xp, depth, chunks, x.dtype)

    def _adjoint(self, y, lead):
        g = self.geometry
        s0 = self._spatial0(lead)
        if all(len(c) == 1 for c in y.chunks[s0:]):
            return self._whole(y, s0, g.input_shape, True)
        plans = tuple(AxisPlan.for_output(ax, y.chunks[s0 + a]) for a, ax in enumerate(g.axes))
        y = _rechunk(y, y.chunks[:s0] + tuple(p.out_chunks for p in plans))
        depth = {s0 + a: p.adjoint_depth for a, p in enumerate(plans)}
        channel = ((g.channels.in_channels,),) if g.channels else ()
        dtype = np.result_type(y.dtype, self.dtype)
        local = self._edges_local(plans, None, forward=False)
        inner = tuple(_input_chunks(ax, p) for ax, p in zip(g.axes, plans)) if local else \
            tuple(p.padded_chunks for p in plans)
        xp = _halo_map(functools.partial(_adjoint_block, self, plans, s0, local), y, depth,
                       y.chunks[:lead] + channel + inner, dtype)
        return xp if local else self._fold(xp, s0, plans)

    def _edges_local(self, plans, input_chunks, forward: bool) -> bool:
        """Whether ``P`` (`forward`) or ``P^H`` runs inside the edge blocks: the padded
        blocks are the input's blocks plus the margins at the two ends, and the margins
        copy (or fold onto) samples of their own edge block only."""
        g = self.geometry
        for a, (ax, plan) in enumerate(zip(g.axes, plans)):
            p = np.asarray(plan.padded_edges)
            if forward:
                edges = np.r_[0, np.cumsum(input_chunks[a])]
                if len(edges) != len(p) or np.any(p[1:-1] != ax.lo + edges[1:-1]) or (
                        len(edges) > 2 and np.diff(edges).min() < max(plan.forward_depth)):
                    return False
            else:
                edges = np.clip(p - ax.lo, 0, ax.n)
                if np.diff(edges).min() <= 0:
                    return False
            if g.boundary == "zero" or not (ax.lo or ax.hi):
                continue
            ext = ax.extension_map(g.boundary)
            if (ax.lo and ext[:ax.lo].max() >= edges[1]) or \
                    (ax.hi and ext[ax.lo + ax.n:].min() < edges[-2]):
                return False
        return True

    # -- P and P^H ----------------------------------------------------------------
    def _extend(self, x, s0):
        """``P``: extend the spatial axes at the array's outer edges by the boundary rule."""
        da = _da()
        g = self.geometry
        if all(p == (0, 0) for p in g.pads):
            return x
        if g.boundary == "zero":
            return da.pad(x, ((0, 0),) * s0 + g.pads, mode="constant")
        for a, ax in enumerate(g.axes):
            if not (ax.lo or ax.hi):
                continue
            index = ax.extension_map(g.boundary)  # numpy.pad's map, any pad width
            axis = s0 + a
            pieces = [da.take(x, index[:ax.lo], axis=axis)] if ax.lo else []
            pieces.append(x)
            if ax.hi:
                pieces.append(da.take(x, index[ax.lo + ax.n:], axis=axis))
            x = da.concatenate(pieces, axis=axis)
        return x

    def _fold(self, xp, s0, plans):
        """``P^H``: the input's window, plus the margins added onto the samples they copy.

        The result has the blocks of the plan's padded edges, shifted by ``lo``.
        """
        g = self.geometry
        for a, ax in enumerate(g.axes):
            axis = s0 + a
            cut = lambda start, stop: xp[(slice(None),) * axis + (slice(start, stop),)]
            inside = cut(ax.lo, ax.lo + ax.n)
            if g.boundary != "zero" and (ax.lo or ax.hi):
                ext = ax.extension_map(g.boundary)
                margins = [(cut(u, v), ext[u:v]) for u, v in
                           ((0, ax.lo), (ax.lo + ax.n, ax.padded_length)) if v > u]
                inside = _scatter_add(inside, margins, axis, ax.n)
                edges = np.unique(np.clip(np.asarray(plans[a].padded_edges) - ax.lo, 0, ax.n))
                inside = _rechunk(inside, inside.chunks[:axis] + (tuple(np.diff(edges).tolist()),)
                                  + inside.chunks[axis + 1:])
            xp = inside
        return xp


def _halo_map(function, x, depth, chunks, dtype):
    """``map_overlap(function, x, depth, boundary="none", trim=False)`` in two tasks per block.

    Each block's first task cuts the thin pieces its neighbours read (copies, a
    dict by direction: a view would keep the whole block alive on the worker
    while dask counts only the view's bytes); the second joins the block with
    its neighbours' pieces and runs `function(block, block_id=...)`.  dask's
    map_overlap spends about ten tasks per block on the same (a slice per
    neighbour, concatenations, rechunks), and per-task scheduling is the
    serial part of a chunked run.  Halos come from the next block only (the
    plans merge blocks until they do).

    When `x` is read from a store (an iterate kept on disk, see
    :meth:`_Iterates.keep`), both tasks read their block from the store
    themselves: only the thin pieces pass between tasks, so no worker holds a
    block waiting for its neighbours' halos (the stencil's wavefront of whole
    blocks, rows of chunks wide, is what fills the workers' memory otherwise).
    """
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    da = _da()
    axes = tuple(a for a in sorted(depth) if depth[a] != (0, 0))
    store = _store_of(x)
    token = tokenize(function, x, depth, chunks, dtype, store is not None)
    name, halo = f"linconv-block-{token}", f"linconv-halo-{token}"
    dsk = {}
    cut = functools.partial(_halo_pieces, axes, tuple(depth[a] for a in axes))
    starts = [np.r_[0, np.cumsum(c)] for c in x.chunks]
    for index in np.ndindex(*x.numblocks):
        read, block = None, [(x.name,) + index]
        if store is not None:
            read, block = functools.partial(_read_block, store, tuple(
                slice(int(s[i]), int(s[i + 1])) for s, i in zip(starts, index))), []
        if axes:
            dsk[(halo,) + index] = (cut, (read,) if read else block[0])
        around = [[d for d in (-1, 0, 1) if d == 0 or (
            0 <= index[a] + d < x.numblocks[a] and depth[a][(d + 1) // 2])] for a in axes]
        offsets = [d for d in itertools.product(*around) if any(d)]
        keys = [(halo,) + tuple(i + (d[axes.index(a)] if a in axes else 0)
                                for a, i in enumerate(index)) for d in offsets]
        dsk[(name,) + index] = (functools.partial(_with_halo, function, axes, tuple(around),
                                                  tuple(offsets), index, read), keys, *block)
    graph = HighLevelGraph.from_collections(name, dsk,
                                            dependencies=[] if store is not None else [x])
    return da.Array(graph, name, chunks, meta=np.empty((0,) * x.ndim, dtype))


_STORE_ATTRIBUTE = "_linconv_store"


def _store_of(x):
    """The store `x` reads unchanged, chunk for chunk: a kept iterate's file (set by
    :meth:`_Iterates.keep`) or the zarr array of ``da.from_zarr``; else None."""
    store = getattr(x, _STORE_ATTRIBUTE, None)
    if store is None:
        store = _from_zarr_source(x)
    if store is None or tuple(store.shape) != tuple(x.shape) or np.dtype(store.dtype) != x.dtype:
        return None
    return store


def _from_zarr_source(x):
    """The zarr array of ``da.from_zarr(...)`` (its graph: the array under the key
    ``original-<name>`` and one layer of reads), else None."""
    if not x.name.startswith("from-zarr-"):
        return None
    graph = x.__dask_graph__()
    original = "original-" + x.name
    if set(getattr(graph, "layers", ())) != {x.name, original}:
        return None
    source = graph.layers[original].get(original)
    return source if type(source).__module__.partition(".")[0] == "zarr" else None


def _read_block(store, index):
    return np.asarray(store[index])


def _halo_pieces(axes, depth, block):
    """The pieces of `block` its neighbours read: by the block's direction ``d`` seen from
    the neighbour (-1: the block is before it, so its last ``lo`` samples); copies."""
    pieces = {}
    for d in itertools.product((-1, 0, 1), repeat=len(axes)):
        if not any(d):
            continue
        index = [slice(None)] * block.ndim
        for a, di, (lo, hi) in zip(axes, d, depth):
            index[a] = slice(max(block.shape[a] - lo, 0), None) if di < 0 else \
                slice(0, hi) if di > 0 else slice(None)
        pieces[d] = block[tuple(index)].copy()
    return pieces


def _with_halo(function, axes, around, offsets, index, read, halos, *block):
    """`function` of the block (dask's, else `read` from its store here: then it is freed
    once joined with its halos) with its neighbours' pieces."""
    cells = {d: pieces[d] for d, pieces in zip(offsets, halos)}
    cells[(0,) * len(axes)] = read() if read else block[0]
    joined = _assemble(cells, around, axes)
    del cells
    return function(joined, block_id=index)


def _assemble(cells, around, axes):
    """Join the cells (by direction along `axes`) into one new array: a single allocation,
    since every block-sized allocation costs page faults on a dask worker (whose allocator
    returns freed memory to the system at once)."""
    if len(cells) == 1:
        return cells[(0,) * len(axes)]
    center = cells[(0,) * len(axes)]
    widths = [{d: cells[tuple(d if b == a else 0 for b in range(len(axes)))].shape[axis]
               for d in around[a]} for a, axis in enumerate(axes)]
    shape = list(center.shape)
    for a, axis in enumerate(axes):
        shape[axis] = sum(widths[a].values())
    out = np.empty(shape, np.result_type(*cells.values()))
    for d, cell in cells.items():
        index = [slice(None)] * out.ndim
        for a, axis in enumerate(axes):
            start = sum(widths[a][e] for e in around[a] if e < d[a])
            index[axis] = slice(start, start + widths[a][d[a]])
        out[tuple(index)] = cell
    return out


def _regions(targets: np.ndarray, n: int) -> list[tuple[int, int]]:
    """One or two index ranges covering `targets` (split at the widest gap)."""
    unique = np.unique(targets)
    if len(unique) > 1:
        gaps = np.diff(unique)
        at = int(np.argmax(gaps))
        if gaps[at] > 1:
            return [(int(unique[0]), int(unique[at]) + 1), (int(unique[at + 1]), int(unique[-1]) + 1)]
    return [(int(unique[0]), int(unique[-1]) + 1)]


def _scatter_add(inside, margins, axis, n):
    """``inside[..., t[m], ...] += margin[..., m, ...]`` along `axis` for every
    ``(margin, t)`` of `margins` (targets may repeat)."""
    da = _da()
    one = lambda a: _rechunk(a, a.chunks[:axis] + ((a.shape[axis],),) + a.chunks[axis + 1:])
    margins = [(one(m), t) for m, t in margins]  # thin: one block along `axis`
    pieces, start = [], 0
    cut = lambda a, b: inside[(slice(None),) * axis + (slice(a, b),)]
    for r0, r1 in _regions(np.concatenate([t for _, t in margins]), n):
        folds = []
        for _, t in margins:
            rows = np.flatnonzero((t >= r0) & (t < r1))
            fold = np.zeros((len(t), r1 - r0))
            np.add.at(fold, (rows, t[rows] - r0), 1)
            folds.append(fold)
        if r0 > start:
            pieces.append(cut(start, r0))
        pieces.append(da.map_blocks(functools.partial(_fold_block, tuple(folds), axis),
                                    one(cut(r0, r1)), *[m for m, _ in margins],
                                    dtype=inside.dtype))
        start = r1
    if start < n:
        pieces.append(cut(start, n))
    return da.concatenate(pieces, axis=axis) if len(pieces) > 1 else pieces[0]


def _fold_block(folds, axis, region, *margins):
    out = region.copy()
    for fold, margin in zip(folds, margins):
        if fold.any():
            out += np.moveaxis(np.tensordot(margin, fold.astype(margin.dtype),
                                            axes=([axis], [0])), -1, axis)
    return out


def _rechunk(x, chunks):
    """`x` with `chunks` (a tuple per axis), rechunked only where they differ."""
    chunks = tuple(chunks)
    return x if x.chunks == chunks else x.rechunk(chunks)


def _block_geometry(chunked, sizes) -> Geometry:
    g = chunked.geometry
    return Geometry(tuple(AxisGeometry(n, ax.k, ax.stride, ax.dilation, 0, 0)
                          for n, ax in zip(sizes, g.axes)), "zero", g.channels)


def _whole_block(chunked, adjoint, block):
    op = chunked._local(chunked.geometry)
    return op.H.apply(block) if adjoint else op.apply(block)


def _one_thread(block_function):
    """Blocks of a chunked array run in parallel over dask's workers, each on one thread:
    linconv's own threads inside every block would oversubscribe the cores."""
    @functools.wraps(block_function)
    def run(*args, **kwargs):
        with set_workers(1):
            return block_function(*args, **kwargs)
    return run


@_one_thread
def _forward_block(chunked, plans, s0, extend, block, block_id=None):
    """One output block: the valid correlation of the padded samples it reads (with
    `extend`, `block` holds input samples: ``P`` happens here, at the edges)."""
    if extend:
        block = _extend_local(chunked, plans, s0, block, block_id)
    crops, sizes = [], []
    for a, (p, ax) in enumerate(zip(plans, chunked.geometry.axes)):
        j = block_id[s0 + a]
        before = p.forward_depth[0] if j > 0 else 0  # halo samples in front of the block
        o0, o1 = p.out_edges[j], p.out_edges[j + 1]
        start = o0 * ax.stride - (p.padded_edges[j] - before)
        sizes.append((o1 - o0 - 1) * ax.stride + ax.span)
        crops.append(slice(start, start + sizes[-1]))
    local = chunked._local(_block_geometry(chunked, sizes))
    return local.apply(block[(Ellipsis,) + tuple(crops)])


@_one_thread
def _adjoint_block(chunked, plans, s0, fold, block, block_id=None):
    """One padded block of ``C^H S^T y``: the local adjoint of the outputs reaching into it
    (with `fold`, ``P^H`` too: the input's block)."""
    z = _adjoint_padded(chunked, plans, s0, block, block_id)
    return _fold_local(chunked, plans, s0, z, block_id) if fold else z


def _adjoint_padded(chunked, plans, s0, block, block_id):
    nd = len(plans)
    g = chunked.geometry
    takes, sizes, crops, pads = [], [], [], []
    for a, (p, ax) in enumerate(zip(plans, g.axes)):
        j = block_id[s0 + a]
        s, span = ax.stride, ax.span
        before = p.adjoint_depth[0] if j > 0 else 0
        p0, p1 = p.padded_edges[j], p.padded_edges[j + 1]
        first = min(max(-(-(p0 - span + 1) // s), 0), ax.n_out)
        last = min((p1 - 1) // s, ax.n_out - 1)
        if last < first:  # no output reaches this block
            lead = s0 - (g.channels is not None)
            return np.zeros(block.shape[:lead] + g.input_shape[:s0 - lead]
                            + tuple(q.padded_chunks[block_id[s0 + b]]
                                    for b, q in enumerate(plans)),
                            np.result_type(block, chunked.dtype))
        offset = p.out_edges[j] - before  # output index of the block's first row
        takes.append(slice(first - offset, last + 1 - offset))
        sizes.append((last - first) * s + span)
        start = p0 - first * s  # the block's first padded sample in the local window
        crops.append(slice(max(start, 0), min(start + p1 - p0, sizes[-1])))
        pads.append((max(-start, 0), max(start + p1 - p0 - sizes[-1], 0)))
    local = chunked._local(_block_geometry(chunked, sizes))
    z = local.H.apply(block[(Ellipsis,) + tuple(takes)])[(Ellipsis,) + tuple(crops)]
    if any(q != (0, 0) for q in pads):
        z = np.pad(z, ((0, 0),) * (z.ndim - nd) + tuple(pads))
    return z


def _extend_local(chunked, plans, s0, block, block_id):
    """``P`` in an edge block: its padded samples and halo, from its own input samples."""
    g = chunked.geometry
    for a, (p, ax) in enumerate(zip(plans, g.axes)):
        j, last = block_id[s0 + a], p.blocks - 1
        if 0 < j < last or not (ax.lo or ax.hi):
            continue
        f_lo, f_hi = p.forward_depth
        first = p.padded_edges[j] - (f_lo if j > 0 else 0)
        stop = p.padded_edges[j + 1] + (f_hi if j < last else 0)
        index = ax.extension_index(np.arange(first, stop), g.boundary)
        start = first - ax.lo if j > 0 else 0  # input index of the block's first sample
        block = np.take(block, np.maximum(index - start, 0), axis=s0 + a)
        if index.min() < 0:  # the zero boundary
            zero = [slice(None)] * block.ndim
            zero[s0 + a] = index < 0
            block[tuple(zero)] = 0
    return block


def _fold_local(chunked, plans, s0, z, block_id):
    """``P^H`` in an edge block: its input samples, plus the margins folded onto them."""
    g = chunked.geometry
    for a, (p, ax) in enumerate(zip(plans, g.axes)):
        p0, p1 = p.padded_edges[block_id[s0 + a]], p.padded_edges[block_id[s0 + a] + 1]
        if p0 >= ax.lo and p1 <= ax.lo + ax.n:
            continue
        axis = s0 + a
        positions = np.arange(p0, p1)
        index = ax.extension_index(positions, g.boundary)
        inner = (positions >= ax.lo) & (positions < ax.lo + ax.n)
        out = np.compress(inner, z, axis=axis)
        margin = ~inner & (index >= 0)
        if margin.any():
            np.add.at(np.moveaxis(out, axis, 0), index[margin] - max(p0 - ax.lo, 0),
                      np.moveaxis(np.compress(margin, z, axis=axis), axis, 0))
        z = out
    return z


def _input_chunks(ax: AxisGeometry, plan: AxisPlan) -> tuple[int, ...]:
    """The input-domain blocks of a plan's padded blocks (the margins cut off)."""
    return tuple(np.diff(np.clip(np.asarray(plan.padded_edges) - ax.lo, 0, ax.n)).tolist())


def apply(op: ShapedOperator, x):
    """``op.apply(x)`` for a dask array `x`: a lazy dask array, exact to rounding."""
    chunked, adjoint, conjugate = ChunkedCorrelation.of(op)
    if not adjoint:
        return chunked.forward_conj(x) if conjugate else chunked.forward(x)
    return chunked.adjoint(x, conjugate=conjugate)


def convolve_dask(x, kernel, mode="full", boundary="zero", stride=1, dilation=1,
                  method="auto", correlate=False):
    """:func:`linconv.convolve` / :func:`linconv.correlate` of a dask array (lazy).

    Builds no full-size in-memory operator: blocks run linconv's engines.
    """
    kernel = as_kernel(kernel)
    method = as_method(method)
    if x.ndim != kernel.ndim:
        raise ValueError(
            f"`x` and `kernel` must have the same number of dimensions; got x of shape "
            f"{x.shape} and kernel of shape {kernel.shape}")
    geometry = Geometry.from_args(kernel.shape, x.shape, mode, boundary, stride, dilation)
    dtype = operator_dtype(kernel)
    return ChunkedCorrelation(geometry, correlation_weights(kernel, correlate), dtype,
                              method).forward(x)


# -- deconvolution ------------------------------------------------------------------
_DASK_SOLVERS = ("auto", "cg", "richardson-lucy", "rl")


def deconvolve_dask(y, kernel, *, mode="same", boundary="zero", correlate=False, solver="auto",
                    damp="auto", noise_std=None, regularizer="tikhonov", bounds=None,
                    weights=None, background=0.0, maxiter=None, tol=1e-6,
                    preconditioner="auto", x0=None, callback=None, progress=False):
    """:func:`linconv.deconvolve` of a dask array `y`: iterations on dask, `x` a dask array.

    Same arguments as :func:`linconv.deconvolve`.  On one image (``y.ndim ==
    kernel.ndim``):

    - ``solver="cg"`` (also what "auto" picks): conjugate gradients on the
      normal equations ``(A^H W A + damp^2 I) x = A^H W (y - b)``, the
      iterates of scipy's cg there, in the Chronopoulos-Gear form: both inner
      products of an iteration come from the same vectors, so an iteration is
      one pass over the arrays (no full-size array waits for a reduction) and
      one synchronisation (two with the iterates on disk, see below).  It
      keeps ``x``, the normal residual ``r``, ``p``, ``s = N p`` and ``N r``,
      and applies ``N`` and ``A`` (``A x`` for the residual norm) per
      iteration.  ``N r`` is one stencil per block (``A^H W A`` of the
      block's window, the edge blocks extending it by the boundary rule and
      adding the margins back; without weights, away from the image's edges,
      one correlation with the kernel's autocorrelation) where the margins
      copy samples of their own edge block (the zero boundary; "reflect",
      "symmetric", "edge" unless an edge block is thinner than the pad;
      "wrap" along axes of one block); else it is ``A``, then ``A^H``.  Stops
      when
      ``||r_k|| <= rtol ||A^H W (y - b)||`` (scipy's cg rule) with the
      in-memory cg's ``rtol = max(tol min(1, damp / ||A||), 1e-13)``, which
      keeps the error of `x` near `tol` however small the damp; the residual
      norms ``||sqrt(w) (A x_k + b - y)||^2 + damp^2 ||x_k||^2`` (square root)
      are computed from ``x_k`` every iteration.  No preconditioner.  `y` and
      `weights` are checked as in memory (finite; weights non-negative, not
      all zero) in the first pass, which raises before any iteration.
    - ``solver="richardson-lucy"`` (``"rl"``): the iteration of the in-memory
      solver (:func:`linconv._richardson_lucy.richardson_lucy`) with the same
      start, guards, Biggs-Andrews acceleration and, with `maxiter` None, the
      same stopping rule (the minimum of an unbiased risk estimate, its
      Monte-Carlo divergence from a second, perturbed copy of the iteration);
      the noise model of that rule is fitted on the central crop of at most
      1024 samples per axis (the whole image up to that size, so results
      equal the in-memory ones there).  One pass and one synchronisation per
      iteration (three with the iterates on disk, see below): the products of
      the extrapolation weight of the next iteration are computed with the
      norms of this one.  ``damp`` must be "auto" or 0 (no regularisation).
    - Iterates between iterations: persisted in memory, or, when the arrays
      kept (twice, old and new) would exceed half the memory of the
      dask.distributed workers (of this machine with the local schedulers),
      written block by block to files in a temporary directory and read
      back, so the solve needs memory for a few chunks per worker only.  dask
      config ``linconv.iterates`` ("auto", "memory", "disk") and
      ``linconv.temporary-directory`` choose; on several machines that
      directory must be shared.  A file no array reads any more is written
      again in place; the files go with the solve, but the last ones with
      the last arrays that read them: ``result.x`` reads one until it is
      computed, stored or dropped.
    - ``damp="auto"``: the in-memory :func:`linconv.deconvolve` with
      ``solver="cg"`` and the same options on a central crop of at most 1024
      samples per axis chooses the damp (its noise estimate and discrepancy
      principle, per sample, carry over to the whole image; its damp floor,
      ``1e-3 ||A||``, is cg's); a number is used as given.

    A stack of frames (``y.ndim > kernel.ndim``) runs the in-memory
    :func:`linconv.deconvolve` on every frame in parallel (any of its
    solvers and options but `callback` and `progress`, checked at the call,
    the values of `y` and per-frame arrays by the frames' tasks, at compute;
    `damp` one per frame or for all; `weights`, `background` and `x0` per
    frame or one for all); `x`, and `damp`, `iterations`, `converged` and
    `noise_std` (NaN: not used; one per frame) are then lazy dask arrays:
    compute them together, ``dask.compute(result.x, result.damp)``;
    `residual_norms` is None.

    Returns
    -------
    DeconvolutionResult
        `x` a dask array, float32 when `y` is float32, else float64 (complex
        when `y` or `kernel` is).
    """
    from ._deconvolve import DeconvolutionResult, _noise_std_used, _parse_scalars

    da = _da()
    kernel = as_kernel(kernel)
    if not is_dask_array(y):
        y = da.asarray(y)
    if y.dtype.kind not in "biufc":
        raise TypeError(f"`y` must be a numeric array; got dtype {y.dtype}")
    if y.ndim < kernel.ndim:
        raise ValueError(f"`y` must have at least the kernel's {kernel.ndim} axes; got "
                         f"shape {y.shape}")
    options = dict(mode=mode, boundary=boundary, correlate=correlate, solver=solver, damp=damp,
                   noise_std=noise_std, regularizer=regularizer, bounds=bounds,
                   weights=weights, background=background, maxiter=maxiter, tol=tol,
                   preconditioner=preconditioner, x0=x0, callback=callback, progress=progress)
    # the in-memory checks of the options that are not arrays, here and not in the tasks
    parsed, damp, noise_std, tol, _ = _parse_scalars(solver, damp, noise_std, regularizer,
                                                     maxiter, tol, preconditioner, callback)
    if y.ndim > kernel.ndim:
        return _deconvolve_frames(y, kernel, options, DeconvolutionResult)

    if solver not in _DASK_SOLVERS:
        raise ValueError(f"`solver` on a dask array must be 'auto', 'cg' or 'richardson-lucy' "
                         f"('rl'); got {solver!r} (other solvers: compute `y` into memory, or "
                         "pass a stack of frames)")
    solver = "richardson-lucy" if parsed == "richardson-lucy" else "cg"
    if regularizer != "tikhonov":
        raise ValueError(f"`regularizer` on a dask array must be 'tikhonov'; got {regularizer!r}")
    if bounds is not None:
        raise ValueError("`bounds` are not supported on a dask array; use "
                         "solver='richardson-lucy' for a non-negative image")
    if not (isinstance(preconditioner, str) and preconditioner == "auto"):
        if preconditioner is not None:
            raise ValueError("`preconditioner` is not supported on a dask array; pass 'auto' "
                             "(none is used) or None")
        if solver == "richardson-lucy":
            raise ValueError("solver 'richardson-lucy' does not use `preconditioner`")
    if np.ndim(damp):
        raise ValueError(f"`damp` of one image must be a number or 'auto'; got shape "
                         f"{np.shape(damp)}")
    if is_dask_array(background) or not np.isscalar(background):
        raise ValueError("`background` on one dask image must be a number; subtract an "
                         "array background from `y` first")
    if not np.isfinite(background):
        raise ValueError(f"`background` must be finite; got {background!r}")

    geometry = Geometry.from_output(kernel.shape, y.shape, mode, boundary)
    real = y.dtype.kind != "c" and kernel.dtype.kind != "c"
    precision = np.float32 if y.dtype in (np.float32, np.complex64) else np.float64
    dtype = np.dtype(precision) if real else np.result_type(precision, np.complex64)
    op = ChunkedCorrelation(geometry, correlation_weights(kernel, correlate), dtype)
    y = y.astype(dtype)
    w = None
    if weights is not None:
        w = weights if is_dask_array(weights) else np.asarray(weights)
        if w.shape != y.shape:
            raise ValueError(f"`weights` must have the shape of `y` {y.shape}; got {w.shape}")
        w = w if is_dask_array(w) else da.from_array(w, chunks=y.chunks)
        if w.dtype.kind not in "biuf":
            raise ValueError("`weights` must be finite, real and non-negative (0 marks a "
                             "missing sample)")
        w = w.astype(dtype.type(0).real.dtype).rechunk(y.chunks)
    if x0 is not None:
        x0 = x0 if is_dask_array(x0) else da.asarray(np.asarray(x0))
        if x0.shape != geometry.input_shape:
            raise ValueError(f"`x0` must have the image's shape {geometry.input_shape}; got "
                             f"{x0.shape}")
        x0 = x0.astype(dtype)

    messages = []
    if solver == "richardson-lucy" and damp:
        raise ValueError(f"`damp` must be 'auto' or 0 for richardson-lucy on a dask "
                         f"array (no regularisation there); got {damp!r}")
    _noise_std_used(noise_std, damp, solver, stacklevel=4)  # linconv.deconvolve's caller
    sigma = None
    if solver == "cg" and damp is None:
        damp, sigma, how = _auto_damp(y, kernel, w, options)
        messages.append(how)
    damp = float(damp or 0.0)
    run = _richardson_lucy if solver == "richardson-lucy" else _cgls
    x, norms, iterations, converged, where = run(op, y, w, float(background), damp, maxiter,
                                                 tol, x0, callback, progress)
    messages.append(f"solver {solver} on dask, iterates {where}")
    if real:
        x = x.real if x.dtype.kind == "c" else x
    return DeconvolutionResult(x=x, damp=damp, solver=solver, iterations=iterations,
                               converged=converged, residual_norms=np.array(norms),
                               noise_std=sigma, regularizer=regularizer,
                               message="; ".join(messages))


def _central_crop(shape, size=1024):
    return tuple(slice((n - min(n, size)) // 2, (n - min(n, size)) // 2 + min(n, size))
                 for n in shape)


def _auto_damp(y, kernel, w, options):
    """damp="auto": the in-memory deconvolve's cg on a central crop of `y` chooses it.

    Its cg, not its default solver: the exact solvers allow damps down to
    ``sqrt(eps) ||A||``, at which CG does not converge.
    """
    from ._deconvolve import deconvolve

    crop = _central_crop(y.shape)
    given = {key: value for key, value in options.items()
             if key in ("mode", "boundary", "correlate", "noise_std", "regularizer", "tol",
                        "preconditioner")
             and not _is_default(key, value)}
    given["solver"] = "cg"
    if w is not None:
        given["weights"] = np.asarray(w[crop])
    if options["background"]:
        given["background"] = options["background"]
    result = deconvolve(np.asarray(y[crop]), kernel, damp="auto", **given)
    size = "x".join(str(s.stop - s.start) for s in crop)
    return (float(result.damp), result.noise_std,
            f"damp {result.damp:.4g} chosen by the in-memory deconvolve on the central "
            f"{size} crop ({result.message})")


_DEFAULTS = dict(mode="same", boundary="zero", correlate=False, solver="auto", damp="auto",
                 noise_std=None, regularizer="tikhonov", bounds=None, weights=None,
                 background=0.0, maxiter=None, tol=1e-6, preconditioner="auto", x0=None,
                 callback=None, progress=False)


def _is_default(key, value) -> bool:
    default = _DEFAULTS[key]
    if value is None or default is None or isinstance(value, np.ndarray) or is_dask_array(value):
        return value is default
    return type(value) is type(default) and value == default


def _dot(u, v=None):
    """``Re <u, v>`` (``||u||^2`` without `v`), accumulated in float64 whatever the precision."""
    v = u if v is None else v
    product = (u.conj() * v).real if u.dtype.kind == "c" or v.dtype.kind == "c" else u * v
    return product.sum(dtype=np.float64)


def _progress(progress, maxiter, label):
    if not progress:
        return None
    from ._deconvolve import _Progress
    return _Progress(maxiter, label)


def _memory_bytes() -> int:
    """Memory of the workers of the current dask.distributed client, else of this machine."""
    try:
        from distributed import default_client
        workers = default_client().scheduler_info(n_workers=-1)["workers"].values()
        limits = [info.get("memory_limit") or 0 for info in workers]
        if limits and all(limits):
            return int(sum(limits))
    except (ImportError, ValueError):  # no distributed, or no client: the local schedulers
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


STORAGE_KEY, DIRECTORY_KEY = "linconv.iterates", "linconv.temporary-directory"


class _Iterates:
    """Where the solvers' full-size arrays live between iterations.

    ``"memory"``: persisted (on the workers with dask.distributed).  ``"disk"``:
    written block by block to files in a temporary directory and read back
    (:class:`~linconv._blockfile.BlockFile`; a store below), so a solve
    needs memory for a few chunks per worker only; "auto" (the default)
    chooses it when the arrays kept, twice (old and new during a pass), would
    exceed half the workers' memory (of this machine with the local
    schedulers).  A file no dask array reads any more is written again, in
    place, by a later array of its layout; the files are deleted with the
    solver's store object, and the last ones with the last arrays that read
    them.  ``dask.config`` keys ``linconv.iterates`` ("auto", "memory",
    "disk") and ``linconv.temporary-directory`` (default dask's
    ``temporary-directory``, else the system's) override; on a cluster of
    several machines that directory must be one the workers share.
    """

    def __init__(self, nbytes: int):
        import dask
        where = dask.config.get(STORAGE_KEY, "auto")
        if where not in ("auto", "memory", "disk"):
            raise ValueError(f"dask config `{STORAGE_KEY}` must be 'auto', 'memory' or "
                             f"'disk'; got {where!r}")
        if where == "auto":
            where = "disk" if 4 * nbytes > _memory_bytes() else "memory"
        self.where, self.root, self.files = where, None, None
        if where == "disk":
            directory = (dask.config.get(DIRECTORY_KEY, None)
                         or dask.config.get("temporary-directory", None) or None)
            self.root = tempfile.mkdtemp(prefix="linconv-iterates-", dir=directory)
            self.files = FilePool(self.root)
            weakref.finalize(self, self.files.close)

    def describe(self) -> str:
        return "in memory" if self.where == "memory" else f"on disk (files in {self.root})"

    def keep(self, arrays: dict, scalars=(), dots=()):
        """Compute `arrays` (a dict of dask arrays), `scalars` (small dask arrays) and `dots`
        in one pass; return the kept arrays (persisted, or read back from disk) and the
        values (numpy arrays) of the scalars, then of the dots.

        `dots` are pairs ``(name, v)``: ``Re <arrays[name], v>`` for a dask array `v` of
        the shape of ``arrays[name]``.  On disk they are summed in the tasks that write
        the blocks, so a block's one reader is the task that stores it: nothing waits on
        the workers for a second reader.
        """
        import dask
        names = list(arrays)
        if self.where == "memory":
            scalars = list(scalars) + [_dot(arrays[name], v) for name, v in dots]
            out = dask.persist(*arrays.values(), *scalars)
            values = dask.compute(*out[len(names):])
            return dict(zip(names, out)), [np.asarray(v) for v in values]
        shapes, outputs = {}, {}  # the arrays of each shape, written by one task per block
        for name in names:
            shapes.setdefault(arrays[name].shape, []).append(name)
        sums, order = [], []
        for group in shapes.values():
            ours = [(d, v) for d, (name, v) in enumerate(dots) if name in group]
            pairs = tuple((group.index(dots[d][0]), len(group) + i) for i, (d, _) in
                          enumerate(ours))
            like = _regular(arrays[group[0]])
            outputs.update(self._new(group, like))
            sums.append(_block_sums("linconv-keep-", functools.partial(
                _keep_block, pairs, {n: outputs[n] for n in group}),
                [*(arrays[n] for n in group), *(v for _, v in ours)], len(pairs), like))
            order += [d for d, _ in ours]
        values = dask.compute(*scalars, *sums)
        products = np.concatenate([np.zeros(0), *values[len(scalars):]])[np.argsort(order)]
        return self._open(outputs), [np.asarray(v) for v in values[:len(scalars)]] + \
            list(products)

    def write(self, names, function, inputs, width, like, label="linconv-write-"):
        """New stores `names` (the shape and chunks of `like`, made regular) written by one
        task per block, ``function(outputs, region, inputs)`` (see :func:`_block_map`),
        which returns `width` numbers; returns the kept arrays and those numbers' sums."""
        import dask
        like = _regular(like)
        outputs = self._new(names, like)
        sums, = dask.compute(_block_sums(label, functools.partial(function, outputs), inputs,
                                         width, like))
        return self._open(outputs), list(sums)

    def write_stencil(self, name, like, build, scalars=()):
        """A new store `name` (the shape, regular chunks and dtype of `like`) written by the
        tasks of ``build(store)``, a dask array of numbers per block; returns the kept
        array, and the values of `scalars`, then the numbers' sum."""
        import dask
        outputs = self._new([name], like)
        values = dask.compute(*scalars, build(outputs[name]).sum())
        return self._open(outputs), [np.asarray(v) for v in values]

    def update(self, alpha: float, beta: float, old):
        """CG's update on disk: ``x, r, p, s`` of the next iterate from `old` (``x, r, p,
        N r, s``) and ``||r||^2``, one task per block that reads its blocks from the old
        stores and writes each new block to its store at once, in place: at most four
        blocks in memory (a graph of dask arrays holds the five inputs and the four
        outputs of a block until the stores have run)."""
        return self.write(("x", "r", "p", "s"), functools.partial(_cg_update_block, alpha, beta),
                          old, 1, old[1], "linconv-cg-update-")

    # -- stores ---------------------------------------------------------------
    def _new(self, names, like) -> dict:
        """New stores `names` of the shape, (regular) chunks and dtype of `like`."""
        gc.collect()  # the files of unreferenced iterates are free now, to be written again
        os.makedirs(self.root, exist_ok=True)
        return {name: self.files.take(like.shape, tuple(c[0] for c in like.chunks), like.dtype)
                for name in names}

    def _open(self, stores) -> dict:
        """The `stores` as dask arrays whose stencils read their blocks themselves; a store
        is free again when the last array that reads it is gone."""
        kept = {}
        for name, store in stores.items():
            weakref.finalize(store, self.files.release, store.path,
                             (store.shape, store.chunks, store.dtype.str))
            kept[name] = _da().from_array(store, chunks=store.chunks, asarray=False,
                                          name=f"linconv-iterate-{name}-{store.token}")
            setattr(kept[name], _STORE_ATTRIBUTE, store)
        return kept


def _regular(a):
    """`a` with regular chunks (a store's layout): rechunked only if they are not."""
    regular = all(len(set(c[:-1])) <= 1 and c[-1] <= c[0] for c in a.chunks)
    return a if regular else a.rechunk(tuple(max(c) for c in a.chunks))


def _cgls(op, y, w, background, damp, maxiter, tol, x0, callback, progress):
    """CG on the normal equations ``(A^H W A + damp^2) x = A^H W (y - b)`` with dask arrays.

    The Chronopoulos-Gear form of CG: both inner products of an iteration come
    from the same vectors, so each iteration is one pass over the arrays (no
    full-size array is held across a reduction) and one synchronisation.  The
    pass reads ``x, r, p, s`` and ``N r`` (``r`` the normal residual, ``s = N p``)
    and writes their successors.

    ``N r = A^H W A r + damp^2 r`` is one stencil where :func:`_fused_normal`
    applies (margins inside their edge blocks), else ``A r`` then ``A^H``.  With the iterates
    on disk an iteration is two passes, each ending in stores: the update of
    ``x, r, p, s``; ``N r`` and the misfit of ``x`` (three passes with two
    stencils for ``N r``: ``W A r`` and the misfit, then ``N r``).  The
    stencils read their blocks from the previous pass's stores (see
    :func:`_halo_map`), so only thin halos pass between tasks and a worker
    holds a few blocks at a time.
    In one pass, the blocks of ``r`` and ``A r`` wait on the workers until the
    neighbours' stencils have run: rows of blocks, most of the workers' memory
    at 16 blocks per axis.  (The values are the same either way.)  Every block
    a stencil computes has one reader, in which the kept arrays it is combined
    with (``w``, ``y - b``, ``r``) are read and the dots are summed
    (:func:`_block_map`, :meth:`_Iterates.keep`): a block that waited for a
    second reader, or for a read task of the scheduler's queue, held 4-9
    blocks on a worker.
    """
    d2 = damp * damp
    image_bytes = math.prod(op.geometry.input_shape) * op.dtype.itemsize
    data_bytes = math.prod(op.geometry.output_shape) * op.dtype.itemsize
    store = _Iterates(5 * image_bytes + (1 + (w is not None)) * data_bytes)
    disk = store.where == "disk"

    # element-wise steps with a kept array run in the tasks of the blocks they combine
    def weighted(v):
        return v if w is None else _elementwise(np.multiply, v, w)

    def normal(v):
        if _one_stencil_normal(op, v, w):
            return _fused_normal(op, v, w, d2)
        z = op.adjoint(weighted(op.forward(v)))
        return _elementwise(functools.partial(_plus_scaled, d2), z, v) if d2 else z

    def with_normal(arrays, products, r, more=(), kept=False, dots=()):
        """Keep `arrays` and ``N r`` (as "nr"), with the values of `products`, `dots` (see
        :meth:`_Iterates.keep`), `more` (scalars of `r` and the kept arrays, computed in
        the last pass) and ``<r, N r>`` last (`kept`: `arrays` are on disk already, and
        `products` computed)."""
        if not disk:
            nr = normal(r)
            return store.keep(dict(arrays, nr=nr), products + [_dot(arrays[name], v) for
                                                               name, v in dots]
                              + [f(arrays) for f in more] + [_dot(r, nr)])
        kept, values = (arrays, products) if kept else store.keep(arrays, products, dots)
        r, more = kept["r"], [f(kept) for f in more]
        if _one_stencil_normal(op, r, w):  # its tasks write N r and sum <r, N r>
            last, last_values = store.write_stencil(
                "nr", r, functools.partial(_fused_normal, op, r, w, d2), more)
            return dict(kept, **last), values + last_values
        ar, more_values = store.keep({"ar": weighted(op.forward(r))}, more)  # a pass of its own
        nr = op.adjoint(ar.pop("ar"))
        nr = _elementwise(functools.partial(_plus_scaled, d2), nr, r) if d2 else nr
        last, last_values = store.keep({"nr": nr}, dots=[("nr", r)])
        return dict(kept, **last), values + more_values + last_values

    # first pass: the data (y - b and w, kept), r_0 = A^H W (y - b) - N x_0, N r_0
    start = {"y": y - background if background else y}
    if w is not None:
        start["w"] = w
    rhs = op.adjoint(weighted(start["y"]))
    if x0 is not None:
        start["x"] = x0.rechunk(rhs.chunks)
    start["r"] = rhs if x0 is None else rhs - normal(start["x"])
    checks = _data_checks(y, w, x0)  # the in-memory deconvolve's checks, in the same pass
    products = checks + ([_dot(rhs)] if x0 is not None else [])
    state, values = with_normal(start, products, start["r"], dots=[("r", start["r"])])
    _raise_data_checks(values[:len(checks)], w is not None)
    values = values[len(checks):]
    del start, rhs, products
    yb, w = state.pop("y"), state.pop("w", None)
    if x0 is None:
        state["x"] = _da().zeros_like(state["r"])
    gamma, delta = float(values[-2]), float(values[-1])
    bnorm = math.sqrt(float(values[0]) if x0 is not None else gamma)
    maxiter = 1000 if maxiter is None else int(maxiter)
    from ._deconvolve import _cg_rtol  # the in-memory cg's tolerance (sum |kernel| >= ||A||)
    rtol = _cg_rtol(tol, damp, float(np.abs(op.weights).sum(dtype=np.float64)))
    norms, converged, k = [], gamma == 0, 0
    bar = _progress(progress, maxiter, "deconvolve (cg, dask)")

    def objective(kept):
        """``||sqrt(w) (A x - (y - b))||^2 + damp^2 ||x||^2`` of the kept `x`."""
        ax = op.forward(kept["x"])
        value = _block_sums("linconv-misfit-", _misfit_block, [ax, yb] + ([w] if w is not None
                                                                           else []), 1)[0]
        return value + d2 * _dot(kept["x"]) if d2 else value

    try:
        while not converged and k < maxiter:
            if k == 0:
                alpha, beta = gamma / delta, 0.0
                old = [state[name] for name in ("x", "r", "r", "nr", "nr")]
            else:
                beta = gamma / gamma_old
                alpha = gamma / (delta - beta * gamma / alpha_old)
                old = [state[name] for name in ("x", "r", "p", "nr", "s")]
            # x, r, p, s of the next iterate, in one task per block (its reads too)
            if disk:
                arrays, products = store.update(alpha, beta, old)
            else:
                new = _da().map_blocks(functools.partial(_cg_update, alpha, beta), *old,
                                       new_axis=0, chunks=((4,),) + old[0].chunks,
                                       dtype=old[0].dtype)
                arrays, products = dict(zip(("x", "r", "p", "s"), new)), None
            del old, state  # the old iterates can go
            state, values = with_normal(arrays, products or [_dot(arrays["r"])], arrays["r"],
                                        [objective], kept=disk)
            del arrays
            gamma_old, alpha_old = gamma, alpha
            gamma, value, delta = (float(v) for v in values)
            k += 1
            norms.append(math.sqrt(max(value, 0.0)))
            if callback is not None:
                callback(state["x"])
            if bar is not None:
                bar.update(k, norms[-1])
            converged = math.sqrt(gamma) <= rtol * bnorm
    finally:
        if bar is not None:
            bar.close()
    return state["x"], norms, k, bool(converged), store.describe()


def _data_checks(y, w, x0):
    """Lazy counts of what the in-memory deconvolve refuses: non-finite `y` and `x0`;
    non-finite or negative weights, and the largest weight (all zero: nothing observed)."""
    da = _da()
    checks = [(~da.isfinite(y)).sum(), 0 if x0 is None else (~da.isfinite(x0)).sum()]
    if w is not None:
        checks += [(~da.isfinite(w) | (w < 0)).sum(), w.max()]
    return checks


def _raise_data_checks(values, weighted):
    if values[0]:
        raise ValueError("`y` must be finite; it contains NaN or inf")
    if values[1]:
        raise ValueError("`x0` must be finite; it contains NaN or inf")
    if weighted and values[2]:
        raise ValueError("`weights` must be finite, real and non-negative (0 marks a "
                         "missing sample)")
    if weighted and not values[3] > 0:
        raise ValueError("`weights` are all zero: no sample is observed")


def _cg_update(alpha, beta, x, r, p, nr, s):
    """One block of CG's update: ``x, r, p, s`` of the next iterate, stacked."""
    p = r + beta * p
    s = nr + beta * s
    return np.stack([x + alpha * p, r - alpha * s, p, s])


def _block_map(label, function, inputs, chunks=None, dtype=None, like=None):
    """One task per block of `like` (default the first of `inputs`) that returns
    ``function(region, inputs)``: `region` the block's slices, `inputs` the blocks of the
    dask arrays `inputs` or, for those that read a store unchanged
    (:func:`_store_of`), the store itself, read in the task.

    A block read in the task is not a task of its own: dask's read tasks are roots,
    run when the scheduler's queue reaches them, and the task that combines a read with
    a stencil's block (placed by its inputs on either worker) made the stencil's block
    wait on one worker or travel to the other.  Returns a dask array of `chunks` (by
    default `like`'s) and `dtype` (by default `like`'s).
    """
    from dask.highlevelgraph import HighLevelGraph
    like = inputs[0] if like is None else like
    sources = tuple(_store_of(a) for a in inputs)
    if any(source is None and a.shape != like.shape for a, source in zip(inputs, sources)):
        raise ValueError("_block_map: an input of another shape must read a store unchanged")
    inputs = [a if source is not None else _rechunk(a, like.chunks)
              for a, source in zip(inputs, sources)]
    name = label + uuid.uuid4().hex  # new stores each time: nothing to share with other graphs
    starts = [np.r_[0, np.cumsum(c)] for c in like.chunks]
    extra = (0,) * (len(chunks) - like.ndim) if chunks else ()
    dsk = {}
    for index in np.ndindex(*like.numblocks):
        region = tuple(slice(int(s[i]), int(s[i + 1])) for s, i in zip(starts, index))
        dsk[(name,) + index + extra] = (
            functools.partial(_run_block, function, region, sources),
            *[(a.name,) + index for a, source in zip(inputs, sources) if source is None])
    graph = HighLevelGraph.from_collections(
        name, dsk, dependencies=[a for a, source in zip(inputs, sources) if source is None])
    dtype = np.dtype(dtype or like.dtype)
    chunks = chunks or like.chunks
    return _da().Array(graph, name, chunks, meta=np.empty((0,) * len(chunks), dtype))


def _run_block(function, region, sources, *blocks):
    given = iter(blocks)
    return function(region, [next(given) if source is None else source for source in sources])


def _block_sums(label, function, inputs, width, like=None):
    """:func:`_block_map` of a `function` that returns `width` numbers per block: their
    sums over the blocks, a dask array."""
    like = inputs[0] if like is None else like
    chunks = tuple((1,) * n for n in like.numblocks) + ((width,),)
    sums = _block_map(label, functools.partial(_as_sums, function), inputs, chunks, np.float64,
                      like)
    return sums.sum(axis=tuple(range(like.ndim)))


def _as_sums(function, region, inputs):
    return np.asarray(function(region, inputs), np.float64).reshape((1,) * len(region) + (-1,))


def _elementwise(function, *arrays):
    """``function(*blocks)`` block by block (:func:`_block_map`: stores read in the task)."""
    return _block_map("linconv-elementwise-", functools.partial(_elementwise_block, function),
                      list(arrays), dtype=np.result_type(*(a.dtype for a in arrays)))


def _elementwise_block(function, region, inputs):
    return function(*(_read_only(a, region) for a in inputs))


def _plus_scaled(c, z, v):
    """``z + c v``."""
    return z + c * v


def _misfit_block(region, inputs):
    """``||sqrt(w) (A x - y)||^2`` of a block, from the blocks ``A x, y[, w]``."""
    ax, yb, *w = (_read_only(a, region) for a in inputs)
    misfit = ax - yb
    return [_dot(misfit, w[0] * misfit if w else misfit)]


def _own_block(source, region):
    """The block of `source` (a store, or dask's block: not ours to change) at
    `region`, as an array of our own to change in place."""
    if isinstance(source, np.ndarray):
        return source.copy()
    block = _read_only(source, region)
    return block if block.flags.writeable else block.copy()


def _read_only(source, region):
    """The block at `region` (a store of fewer axes: its trailing axes, e.g. the data
    under Richardson-Lucy's stacked copies)."""
    if isinstance(source, np.ndarray):
        return source
    return np.asarray(source[region[len(region) - source.ndim:]])


def _keep_block(pairs, outputs, region, inputs):
    """Write the blocks of the kept arrays (the first ``len(outputs)`` inputs) to their
    stores; return the dots of `pairs` (input indices), each read once."""
    blocks = {}
    for i, store in enumerate(outputs.values()):
        blocks[i] = _read_only(inputs[i], region)
        store[region] = blocks[i]
    for i, j in pairs:
        for k in (i, j):
            if k not in blocks:
                blocks[k] = _read_only(inputs[k], region)
    return [_dot(blocks[i], blocks[j]) for i, j in pairs]


def _cg_update_block(alpha, beta, outputs, region, inputs):
    """:func:`_cg_update` of one block, on disk: the inputs ``x, r, p, N r, s`` read when
    they are needed, each result written to its store of `outputs` as soon as it is
    known, in place: at most three blocks in memory.  Returns the block's ``||r||^2``."""
    r, p = _own_block(inputs[1], region), _own_block(inputs[2], region)
    p *= beta
    p += r  # r + beta p
    outputs["p"][region] = p
    x = _own_block(inputs[0], region)
    outputs["x"][region] = _axpy(alpha, p, x)
    del x, p
    s = _own_block(inputs[4], region)
    s *= beta
    s += _read_only(inputs[3], region)  # N r + beta s
    outputs["s"][region] = s
    outputs["r"][region] = _axpy(-alpha, s, r)
    return [_dot(r)]


def _axpy(a, x, y):
    """``y += a x`` in place, with no temporary of the block's size (BLAS axpy); `y`."""
    if not (y.flags.c_contiguous and x.flags.c_contiguous and y.dtype == x.dtype):
        y += a * x
        return y
    from scipy.linalg.blas import get_blas_funcs
    flat = y.reshape(-1)
    out = get_blas_funcs("axpy", (x, y))(x.reshape(-1), flat, a=a)
    if out is not flat:  # not written in place (f2py copied): the values still go to `y`
        flat[...] = out
    return y


# -- the normal operator in one stencil ------------------------------------------------
def _one_stencil_normal(op, v, w) -> bool:
    """Whether :func:`_fused_normal` applies: stride 1, one image (no channels or batch),
    `w` None or read from a store (:func:`_store_of`), chunks no thinner than the halo
    (but the first and last), and a boundary rule whose margins copy samples of their
    own edge block (:func:`_margins_local`; the zero rule's are zeros)."""
    g = op.geometry
    return not (g.channels is not None or v.ndim != len(g.axes)
                or tuple(v.shape) != g.input_shape or any(ax.stride != 1 for ax in g.axes)
                or (w is not None and _store_of(w) is None)
                or any(len(c) > 2 and min(c[1:-1]) < ax.span - 1
                       for c, ax in zip(v.chunks, g.axes))
                or (g.boundary != "zero" and not all(
                    _margins_local(ax, g.boundary, c) for c, ax in zip(v.chunks, g.axes))))


def _padded_window(ax, chunks, j):
    """For block `j` of an axis: ``(b0, b1)`` its inputs, ``(w0, w1)`` the inputs its
    stencil task holds (the block and its neighbours' halo pieces), ``(p0, p1)`` the
    padded positions whose ``P v`` it needs (the positions copying its inputs, ``J``,
    and ``span - 1`` more each side) and ``J``'s ends."""
    h = ax.span - 1
    b0 = sum(chunks[:j])
    b1 = b0 + chunks[j]
    w0 = b0 - (min(h, chunks[j - 1]) if j > 0 else 0)
    w1 = b1 + (min(h, chunks[j + 1]) if j < len(chunks) - 1 else 0)
    own, read = ax.block_positions(b0, b1, j == 0, j == len(chunks) - 1)
    return (b0, b1), (w0, w1), read, own


def _margins_local(ax, boundary, chunks) -> bool:
    """Whether every block's stencil task holds the inputs its padded window copies, and
    every margin position copies an input of the edge block it belongs to (``P`` and
    ``P^H`` inside the blocks)."""
    if not (ax.lo or ax.hi):
        return True
    source = ax.extension_map(boundary)
    for j in range(len(chunks)):
        (b0, b1), (w0, w1), (p0, p1), (j0, j1) = _padded_window(ax, chunks, j)
        if source[p0:p1].min() < w0 or source[p0:p1].max() >= w1:
            return False
        if np.any((source[j0:j1] < b0) | (source[j0:j1] >= b1)):
            return False
    return True


def _fused_normal(op, v, w, d2, out=None):
    """``N v = A^H W A v + d2 v`` in one stencil task per block (:func:`_normal_block`)
    where :func:`_one_stencil_normal` says so; with `out` (a store of `v`'s regular
    chunks), the tasks write their blocks there and this is their ``Re <v, N v>``, one
    per block.

    Two stencils (``A v``, then ``A^H`` of the weighted result) cost a pass with a
    full-size intermediate between them: a third of an out-of-core CG iteration.
    With stride 1, a block of ``N v`` reads only the block's window with a halo of
    ``span - 1`` per side (and, at the image's edges, the margins the boundary rule
    copies from the block).
    """
    if out is not None and (_regular(v) is not v or
                            tuple(out.chunks) != tuple(c[0] for c in v.chunks)):
        raise ValueError("_fused_normal: `out` must have the regular chunks of `v`")
    halo = {a: (ax.span - 1,) * 2 for a, ax in enumerate(op.geometry.axes)}
    block = functools.partial(_normal_block, op, _autocorrelation(op.weights), v.chunks,
                              None if w is None else _store_of(w), d2, out)
    if out is not None:
        return _halo_map(block, v, halo, tuple((1,) * len(c) for c in v.chunks), np.float64)
    return _halo_map(block, v, halo, v.chunks, np.result_type(v.dtype, op.dtype))


def _autocorrelation(weights):
    """``g[u] = sum_m conj(h[m]) h[m + u]`` of the correlation weights ``h`` (index ``u + k - 1``):
    ``A^H A`` is the correlation with ``g`` wherever all outputs exist."""
    import scipy.signal
    h = weights.astype(np.result_type(weights.dtype, np.float64))
    return scipy.signal.convolve(h, np.conj(np.flip(h)), mode="full",
                                 method="direct").astype(weights.dtype)


@_one_thread
def _normal_block(op, autocorrelation, chunks, w, d2, out, block, block_id=None):
    """One block of ``N v``: the block with halos of ``span - 1`` (zeros beyond the image),
    its local valid correlation ``L``, the outputs weighted (zero where an output does not
    exist), ``L^H``, cropped to the block.  Without weights, and where every output the
    block reads exists, that is one correlation with the `autocorrelation` (``L^H L``).
    With `out`, written there; returns ``Re <v, N v>`` of the block."""
    g = op.geometry
    dtype = np.result_type(block.dtype, op.dtype)
    pads, crop, outputs = [], [], []
    for ax, c, j in zip(g.axes, chunks, block_id):
        h = ax.span - 1
        start = sum(c[:j])
        # halos shorter than h (none at the image's edges, or thin edge blocks): zeros
        pads.append((h - (min(h, c[j - 1]) if j > 0 else 0),
                     h - (min(h, c[j + 1]) if j < len(c) - 1 else 0)))
        crop.append(slice(h, h + c[j]))
        outputs.append(ax.outputs_meeting(start, start + c[j]))
    own = tuple(slice(c.start - p[0], c.stop - p[0]) for c, p in zip(crop, pads))  # in block
    windows = [_padded_window(ax, c, j) for ax, c, j in zip(g.axes, chunks, block_id)]
    if g.boundary != "zero" and any(ax.is_margin(np.arange(p0, p1)).any()
                                    for ax, (_, _, (p0, p1), _) in zip(g.axes, windows)):
        normal = _normal_with_margins(op, w, block, windows, dtype)
    else:
        normal = _normal_inside(op, autocorrelation, w, block, pads, crop, outputs, dtype)
    if d2:
        normal += d2 * block[own]
    if out is None:
        return normal
    out[tuple(slice(sum(c[:j]), sum(c[:j + 1])) for c, j in zip(chunks, block_id))] = normal
    return np.full((1,) * normal.ndim, _dot(block[own], normal))


def _normal_inside(op, autocorrelation, w, block, pads, crop, outputs, dtype):
    """:func:`_normal_block` where the window holds no margin of a boundary rule (the zero
    rule's are zeros)."""
    g = op.geometry
    v = np.pad(block, pads) if any(any(p) for p in pads) else block
    v = v.astype(dtype, copy=False)
    crop = tuple(crop)
    if w is None and all(o0 >= 0 and o1 <= ax.n_out for (o0, o1), ax in zip(outputs, g.axes)):
        local = _local_operator(Geometry(tuple(
            AxisGeometry(n, 2 * ax.k - 1, 1, ax.dilation, 0, 0) for n, ax in zip(v.shape, g.axes)),
            "zero", None), autocorrelation.tobytes(), autocorrelation.shape, op.dtype.str,
            op.method)
        normal = local.apply(v)
    else:  # one full-size temporary at a time besides the block: about three in all
        local = op._local(_block_geometry(op, v.shape))
        z = local.apply(v)
        del v
        owned = z.flags.writeable and not np.may_share_memory(z, block)  # weighed in place
        z = _weigh_outputs(z if owned else z.copy(), w, outputs, g.axes)
        full = local.H.apply(z)
        del z
        normal = np.array(full[crop])
        del full
    return normal


def _normal_with_margins(op, w, block, windows, dtype):
    """:func:`_normal_block` of an edge block under a boundary rule: ``P v`` on the block's
    padded window (a gather by the extension map, which :func:`_margins_local` checked
    stays in the task's inputs), ``L``, the weights, ``L^H``, then ``P^H``: the positions
    that copy the block's samples added onto them (the margins' few by ``np.add.at``)."""
    g = op.geometry
    positions = [np.arange(p0, p1) for _, _, (p0, p1), _ in windows]
    sources = [ax.extension_index(q, g.boundary) for ax, q in zip(g.axes, positions)]
    window = block[np.ix_(*[s - w0 for s, (_, (w0, _), _, _) in zip(sources, windows)])]
    local = op._local(_block_geometry(op, window.shape))
    z = local.apply(window.astype(dtype, copy=False))
    del window
    owned = z.flags.writeable and not np.may_share_memory(z, block)
    z = _weigh_outputs(z if owned else z.copy(), w,
                       [(p0, p1 - ax.span + 1) for ax, (_, _, (p0, p1), _) in zip(g.axes, windows)],
                       g.axes)
    z = local.H.apply(z)
    for a, (ax, q, s, ((b0, b1), _, _, _)) in enumerate(zip(g.axes, positions, sources,
                                                            windows)):
        copies, margin = (s >= b0) & (s < b1), ax.is_margin(q)
        own = np.flatnonzero(copies & ~margin)  # the block's samples, in order: a slice
        margins = np.flatnonzero(copies & margin)
        folded = np.array(z[(slice(None),) * a + (slice(own[0], own[-1] + 1),)])
        if margins.size:
            np.add.at(folded, (slice(None),) * a + (s[margins] - b0,),
                      np.take(z, margins, axis=a))
        z = folded
    return z


def _weigh_outputs(z, w, outputs, axes):
    """`z` (the local outputs ``[o0, o1)`` per axis) times the weights `w` (a store, or
    None: ones), in place; zero on the outputs that do not exist."""
    inside = tuple(slice(min(max(-o0, 0), o1 - o0), max(min(ax.n_out - o0, o1 - o0), 0))
                   for (o0, o1), ax in zip(outputs, axes))
    if w is not None:
        z[inside] *= _read_only(w, tuple(slice(max(o0, 0), min(o1, ax.n_out))
                                         for (o0, o1), ax in zip(outputs, axes)))
    for a, s in enumerate(inside):
        z[(slice(None),) * a + (slice(0, s.start),)] = 0
        z[(slice(None),) * a + (slice(s.stop, None),)] = 0
    return z


def _probe_block(shape, dtype, y_block, block_info=None):
    """One block of ``np.random.default_rng(0).choice([-1, 1], shape)``, the Monte-Carlo
    probe of Richardson-Lucy's stopping rule, generated without the rest of the array.

    numpy draws each sample of a range-2 ``integers`` from one 32-bit half of
    PCG64's 64-bit outputs (low half first), as their top bit, without
    rejection; so sample ``i`` in C order is the top bit of half ``i % 2`` of
    output ``i // 2``, reached by ``PCG64.advance``.  (tests/test_dask.py checks
    the blocks against numpy's array.)
    """
    location = block_info[0]["array-location"]
    sizes = [b - a for a, b in location]
    out = np.empty(sizes, dtype)
    if not all(sizes):
        return out
    strides = np.cumprod((tuple(shape[1:]) + (1,))[::-1])[::-1]
    c0, c1 = location[-1]
    rows = out.reshape(-1, c1 - c0)
    generator = np.random.PCG64(0)
    state = generator.state
    for row, index in zip(rows, itertools.product(*(range(a, b) for a, b in location[:-1]))):
        first = int(np.dot(index, strides[:-1])) + c0 if index else c0
        generator.state = state
        generator.advance(first // 2)
        raw = generator.random_raw((first + c1 - c0 + 1) // 2 - first // 2)
        halves = np.stack([raw & 0xFFFFFFFF, raw >> 32], axis=-1).ravel()
        row[:] = np.where(halves[first % 2:first % 2 + c1 - c0] >> 31, 1, -1)
    return out


def _richardson_lucy(op, y, w, background, damp, maxiter, tol, x0, callback, progress):
    """linconv's Richardson-Lucy with dask arrays: the iteration of
    :func:`linconv._richardson_lucy.richardson_lucy` (its start, guards, Biggs-Andrews
    acceleration and automatic stopping rule), one pass and one synchronisation per
    iteration."""
    from ._richardson_lucy import MAX_ITERATIONS, RiskStop, noise_variance_model

    da = _da()
    if op.dtype.kind == "c":
        raise TypeError("Richardson-Lucy is for non-negative real data; `y` or `kernel` is "
                        "complex: use solver='cg'")
    if op.weights.min() < 0:
        raise ValueError(f"`kernel` must be non-negative; got minimum {op.weights.min():.6g}")
    if background < 0:
        raise ValueError(f"`background` must be non-negative; got {background!r}")
    dtype = op.dtype
    eps, tiny = float(np.finfo(dtype).eps), float(np.finfo(dtype).tiny)
    rule = maxiter is None
    nb = 2 if rule else 1
    image_bytes = math.prod(op.geometry.input_shape) * dtype.itemsize
    data_bytes = math.prod(op.geometry.output_shape) * dtype.itemsize
    store = _Iterates((4 * nb + 1) * image_bytes + 4 * data_bytes)
    ones = w is None
    w = da.ones_like(y) if ones else w
    observed = w > 0
    finite = da.isfinite(y)  # everywhere, as the in-memory deconvolve asks
    y = da.where(observed, y, 0).astype(dtype)

    # setup, first pass: the data, A^H w and the checks and sums of the start
    setup = {"y": y, "sens": op.adjoint(w)}
    if not ones:
        setup["w"] = w
    scalars = [w.min(), (~da.isfinite(w)).sum(), y.min(), (~finite).sum(),
               setup["sens"].max(), (w * (y - background)).sum(dtype=np.float64),
               (w * y).sum(dtype=np.float64), y.max()]
    if x0 is not None:
        setup["x0"] = x0.astype(dtype).rechunk(setup["sens"].chunks)
        scalars += [setup["x0"].min(), (~da.isfinite(setup["x0"])).sum()]
    note = ""
    if rule:
        crop = _central_crop(y.shape)
        gain, level = noise_variance_model(np.asarray(y[crop]),
                                           None if ones else np.asarray(w[crop]))
        scalars += [(w * (gain * y + level)).sum(dtype=np.float64), observed.sum()]
        if crop != tuple(slice(0, n) for n in y.shape):
            note = "; noise model of the stopping rule from the central " + \
                "x".join(str(s.stop - s.start) for s in crop) + " crop"
    kept, values = store.keep(setup, scalars)
    for name, (low, bad) in (("weights", values[0:2]), ("y", values[2:4]),
                             ("x0", values[8:10] if x0 is not None else (0, 0))):
        if bad:
            raise ValueError(f"`{name}` must be finite; got non-finite values")
        if low < 0:
            raise ValueError(f"`{name}` must be non-negative; got minimum {float(low):.6g}")
    y, sens, x0_kept = kept["y"], kept["sens"], kept.get("x0")
    w = kept.get("w", da.ones_like(y) if ones else None)
    smax, wyb, wy, ymax = (float(v) for v in values[4:8])
    seen = sens > 1000 * eps * max(smax, 0)

    # second pass: the start's normalisation; the probe of the stopping rule
    more = {}
    if rule:
        variance_sum, count = float(values[-2]), int(values[-1])
        probe_step = 1e-2 * math.sqrt(variance_sum / count) if count else 0.0
        if probe_step > 0:
            signs = y.map_blocks(functools.partial(_probe_block, y.shape, dtype), dtype=dtype)
            more["probe"] = signs * (y > probe_step)
        else:
            nb = 1
    kept, values = store.keep(more, [seen.sum(), da.where(seen, sens, 0).sum(dtype=np.float64)])
    if not int(values[0]):
        raise ValueError("no pixel of the image is observed: `weights` are all zero "
                         "or the kernel is zero")
    if x0 is None:
        total = float(values[1])
        fill = max(wyb / total, 1e-3 * wy / total, tiny)
        start = da.full_like(sens, fill, dtype=dtype)
    else:
        fill, start = None, x0_kept
    ratio_floor = eps * max(ymax, tiny)
    if nb == 2:
        probe = kept["probe"]
        data = da.stack([y, y + probe_step * probe])
        variance = w * (gain * y + level)
    else:
        data = y[None]

    def step(x, ax):
        correction = op.adjoint(_rl_ratio(background, ratio_floor, data, w, ax))
        return _rl_next(seen, x, correction, sens, start)

    if store.where == "disk":  # three passes per iteration, each ending in stores
        passes = _RichardsonLucyOnDisk(op, store, y, None if ones else w, sens,
                                       1000 * eps * max(smax, 0), background, ratio_floor,
                                       fill, x0_kept, kept.get("probe") if nb == 2 else None,
                                       probe_step if nb == 2 else 0.0,
                                       (gain, level) if nb == 2 else None)
    # third pass: the first step from the start (its extrapolation weight is 0)
    if store.where == "disk":
        state = passes.first(nb)
    else:
        v = da.stack([start] * nb)
        state, _ = store.keep({"new": step(v, op.forward(v))})
        state.update(v=v, new_prev=v)
    alpha = np.zeros(nb, dtype)
    axes = tuple(range(1, state["v"].ndim))
    cap = MAX_ITERATIONS if rule else int(maxiter)
    norms, stop, reason = [], RiskStop(), "maxiter"
    bar = _progress(progress, cap, "deconvolve (richardson-lucy, dask)")
    try:
        for k in range(1, cap + 1):
            # iteration k: v_k, the extrapolated point, and A v_k; with them the next
            # step, whose products give the extrapolation weight of iteration k + 1
            new, new_prev, v_prev = state["new"], state["new_prev"], state["v"]
            if store.where == "disk":
                del state
                state, values = passes.iteration(alpha, new, new_prev, v_prev)
                del new, new_prev, v_prev
            else:  # one pass
                v = _rl_extrapolated(alpha, new, new_prev)
                ax = op.forward(v)
                residual = ax[0] + background - y
                g = new - v_prev
                new_next = step(v, ax)
                scalars = [_dot(residual, w * residual), _dot(v[0] - v_prev[0]), _dot(v[0]),
                           ((new_next - v) * g).sum(axis=axes, dtype=np.float64),
                           (g * g).sum(axis=axes, dtype=np.float64)]
                if nb == 2:
                    scalars.append((variance * probe * (ax[1] - ax[0])).sum(dtype=np.float64))
                arrays = {"v": v, "new": new_next}
                del v, ax, residual, g, new_next, v_prev, new_prev, state  # the old can go
                kept, values = store.keep(arrays, scalars)
                del arrays, scalars
                state = dict(kept, new_prev=new)
                del new, kept
            norm2, change2, size2 = (float(value) for value in values[:3])
            gg = values[4]
            alpha = np.clip(values[3] / np.where(gg > 0, gg, 1), 0, 1 - 1e-3).astype(dtype)
            norms.append(math.sqrt(norm2))
            change = math.sqrt(change2) / max(math.sqrt(size2), 1e-300)
            if callback is not None:
                callback(state["v"][0])
            if bar is not None:
                bar.update(k, norms[-1])
            if rule:
                # Stein's unbiased estimate of the weighted prediction risk
                risk = norm2 - variance_sum
                if nb == 2:
                    risk += 2 * float(values[5]) / probe_step
                if stop.update(k, risk, state["v"][0]):
                    reason = "risk"
                    break
            if change < tol:
                reason = "tol"
                break
    finally:
        if bar is not None:
            bar.close()
    if rule:
        x, norms, reason = stop.result(norms, reason, cap)
    else:
        x = state["v"][0]
    return x, norms, len(norms), reason != "maxiter", store.describe() + note


class _RichardsonLucyOnDisk:
    """Richardson-Lucy's iteration with its arrays in stores on disk, in three passes that
    each end in stores: the extrapolated point ``v``; ``q = w data / max(A v + b, floor)``
    with the residual's norm; the next step ``where(seen, max(v A^H q / sens, 0), start)``
    with the extrapolation's products.  Every stencil reads its blocks from the last
    pass's stores and every block of a stencil has one reader, which reads the kept
    arrays it needs itself (see :func:`_block_map`): in one pass the blocks of ``v`` and
    ``A v`` wait for their neighbours' stencils and for their other readers (62 chunks
    per worker on an 8192^2 proxy).  The copies (the stopping rule's perturbed one) stay
    in one block, so that a block holds both ``A v`` of the probe's product.
    """

    def __init__(self, op, store, y, w, sens, threshold, background, floor, fill, x0, probe,
                 probe_step, noise):
        self.op, self.store, self.y, self.w, self.sens, self.x0 = op, store, y, w, sens, x0
        self.probe, self.threshold, self.fill = probe, threshold, fill
        self.ratio = functools.partial(_rl_ratio_block, background, floor, probe_step, noise,
                                       w is not None, probe is not None)

    def _step(self, v, new, v_prev):
        """Passes two and three: ``q``, then the next step from ``v`` (and the products with
        ``g = new - v_prev``); returns the step's store and ``[norm2, probe?]``, the
        products per copy."""
        ax = self.op.forward(v)
        _copies_in_one_block(v, new, v_prev, ax)
        inputs = [ax, self.y] + [a for a in (self.w, self.probe) if a is not None]
        dtype = np.result_type(ax.dtype, *(a.dtype for a in inputs[1:]))
        q, ratio_sums = self.store.write(("q",), self.ratio, inputs, 1 + (self.probe is not None),
                                         ax.astype(dtype), "linconv-rl-ratio-")
        z = self.op.adjoint(q.pop("q"))
        _copies_in_one_block(z)
        nb = v.shape[0]
        kept, products = self.store.write(
            ("new",), functools.partial(_rl_step_block, self.threshold, self.fill),
            [z, v, self.sens, new, v_prev] + ([self.x0] if self.fill is None else []), 2 * nb,
            v, "linconv-rl-step-")
        return kept["new"], ratio_sums, products

    def first(self, nb):
        """The start, stacked `nb` times, and the first step from it."""
        like = _da().zeros((nb,) + self.sens.shape, chunks=((nb,),) + self.sens.chunks,
                           dtype=self.op.dtype)
        start, _ = self.store.write(("v",), functools.partial(_rl_start_block, self.fill),
                                    [] if self.fill is not None else [self.x0], 0, like,
                                    "linconv-rl-start-")
        v = start["v"]
        new, _, _ = self._step(v, v, v)
        return {"v": v, "new": new, "new_prev": v}

    def iteration(self, alpha, new, new_prev, v_prev):
        """Iteration k: the state and the values of the one-pass version's scalars."""
        kept, (change2, size2) = self.store.write(
            ("v",), functools.partial(_rl_extrapolate_block, alpha), [new, new_prev, v_prev], 2,
            new, "linconv-rl-extrapolate-")
        v = kept["v"]
        new_next, ratio_sums, products = self._step(v, new, v_prev)
        nb = v.shape[0]
        values = [ratio_sums[0], change2, size2, np.array(products[:nb]),
                  np.array(products[nb:])] + ratio_sums[1:]
        return {"v": v, "new": new_next, "new_prev": new}, values


# Richardson-Lucy's formulas, of numpy blocks (on disk) or of dask arrays (in memory)
def _rl_extrapolated(alpha, new, new_prev):
    """Biggs-Andrews' extrapolated point ``max(new + alpha (new - new_prev), 0)``, `alpha`
    one weight per copy (axis 0)."""
    return np.maximum(new + alpha.reshape((-1,) + (1,) * (new.ndim - 1)) * (new - new_prev), 0)


def _rl_ratio(background, floor, data, w, ax):
    """``q = w data / max(A v + b, floor)`` (`w` None: ones)."""
    return (data if w is None else w * data) / np.maximum(ax + background, floor)


def _rl_next(seen, v, z, sens, start):
    """The next step ``v z / sens`` (``z = A^H q``, non-negative) where the image is seen,
    else the start."""
    return np.where(seen, np.maximum(v * z / np.where(seen, sens, 1), 0), start)


def _copies_in_one_block(*arrays):
    """The block functions of :class:`_RichardsonLucyOnDisk` sum over the copies of a block
    (the probe's product reads both): refuse arrays whose copies are split."""
    for a in arrays:
        if len(a.chunks[0]) != 1:
            raise RuntimeError(f"linconv: Richardson-Lucy's stacked copies are split over "
                               f"blocks {a.chunks[0]}; please report this")


def _rl_start_block(fill, outputs, region, inputs):
    """The start (`fill`, else the kept x0 of `inputs`) in every copy."""
    store = outputs["v"]
    v = np.empty(tuple(r.stop - r.start for r in region), store.dtype)
    v[...] = fill if fill is not None else _read_only(inputs[0], region)
    store[region] = v
    return []


def _rl_extrapolate_block(alpha, outputs, region, inputs):
    """``v = max(new + alpha (new - new_prev), 0)`` per copy; ``||v_0 - v_prev_0||^2`` and
    ``||v_0||^2`` (the copies are in one block)."""
    new, new_prev, v_prev = (_read_only(a, region) for a in inputs)
    v = _rl_extrapolated(alpha, new, new_prev)
    outputs["v"][region] = v
    return [_dot(v[0] - v_prev[0]), _dot(v[0])]


def _rl_ratio_block(background, floor, probe_step, noise, weighted, probed, outputs, region,
                    inputs):
    """``q = w data / max(A v + b, floor)`` (data: ``y``, and ``y + probe_step probe``);
    ``||sqrt(w) (A v_0 + b - y)||^2`` and, with the probe, ``sum(w (gain y + level) probe
    (A v_1 - A v_0))``."""
    ax, y, *rest = (_read_only(a, region) for a in inputs)
    w = rest.pop(0) if weighted else None
    probe = rest.pop(0) if probed else None
    data = np.stack([y, y + probe_step * probe]) if probed else y[None]
    outputs["q"][region] = _rl_ratio(background, floor, data, w, ax)
    residual = ax[0] + background - y
    sums = [_dot(residual, residual if w is None else w * residual)]
    if probed:
        gain, level = noise
        variance = gain * y + level if w is None else w * (gain * y + level)
        sums.append((variance * probe * (ax[1] - ax[0])).sum(dtype=np.float64))
    return sums


def _rl_step_block(threshold, fill, outputs, region, inputs):
    """The next step ``where(seen, max(v z / sens, 0), start)`` from ``z = A^H q``; per copy
    ``sum((new - v) g)`` and ``sum(g g)``, ``g = new_k - v_prev`` (the last step's change)."""
    z, v, sens, new_k, v_prev, *x0 = (_read_only(a, region) for a in inputs)
    new = _rl_next(sens > threshold, v, z, sens, fill if fill is not None else x0[0])
    outputs["new"][region] = new
    g = new_k - v_prev
    axes = tuple(range(1, new.ndim))
    return [*((new - v) * g).sum(axis=axes, dtype=np.float64),
            *(g * g).sum(axis=axes, dtype=np.float64)]


def _deconvolve_frames(y, kernel, options, result_type):
    """Every frame through the in-memory deconvolve, in parallel (one task per frame)."""
    da = _da()
    if options["callback"] is not None or options["progress"]:
        raise ValueError("`callback` and `progress` are not supported for a stack of frames "
                         "on dask (the frames run in parallel on the workers)")
    nf = y.ndim - kernel.ndim
    frame_shape = y.shape[nf:]
    image = Geometry.from_output(kernel.shape, frame_shape, options["mode"],
                                 options["boundary"]).input_shape
    size = math.prod(image)
    layout = {**{i: 1 for i in range(nf)}, **{i: -1 for i in range(nf, y.ndim)}}
    y = y.rechunk(layout)
    arrays = [y]
    per_frame = []
    # per frame, or one for all frames (broadcast), as the in-memory deconvolve takes them
    for name, shape, one in (("weights", y.shape, frame_shape),
                             ("background", y.shape, frame_shape),
                             ("x0", y.shape[:nf] + image, image)):
        value = options[name]
        if value is None or (name == "background" and np.ndim(value) == 0 and
                             not is_dask_array(value)):
            continue
        value = value if is_dask_array(value) else da.from_array(np.asarray(value))
        if value.shape == one:
            value = da.broadcast_to(value, shape)
        if value.shape != shape:
            raise ValueError(f"`{name}` must have shape {shape} (or {one}, for every frame) "
                             f"for this stack; got {value.shape}")
        arrays.append(value.rechunk(layout))
        per_frame.append(name)
    batch = y.shape[:nf]
    damps = None
    if not isinstance(options["damp"], str) and np.ndim(options["damp"]):
        try:
            damps = np.broadcast_to(np.asarray(options["damp"], float), batch)  # one per frame
        except ValueError:
            raise ValueError(f"`damp` must be a number or one per frame, shaped like the "
                             f"stack's leading axes {batch}; got shape "
                             f"{np.shape(options['damp'])}") from None
    solver = _frames_solver(kernel, frame_shape, image, options)
    from ._deconvolve import _noise_std_used
    damp = None if isinstance(options["damp"], str) else options["damp"]
    unused = not _noise_std_used(options["noise_std"], damp, solver, stacklevel=5)
    given = {key: value for key, value in options.items()
             if key not in per_frame and (key == "damp" or not _is_default(key, value))
             and not (key == "noise_std" and unused)}  # warned here, once
    complex_ = y.dtype.kind == "c" or kernel.dtype.kind == "c"
    pack = np.complex128 if complex_ else np.float64
    packed = da.map_blocks(
        functools.partial(_frame_block, kernel, given, damps, tuple(per_frame), nf, pack),
        *arrays, chunks=y.chunks[:nf] + ((size + 4,),), drop_axis=list(range(nf + 1, y.ndim)),
        dtype=pack, meta=np.empty((0,) * (nf + 1), pack))
    precision = np.float32 if y.dtype in (np.float32, np.complex64) else np.float64
    xdtype = np.result_type(precision, np.complex64) if complex_ else np.dtype(precision)
    x = packed[..., :size].reshape(y.shape[:nf] + image).astype(xdtype)
    tail = packed[..., size:].real
    return result_type(x=x, damp=tail[..., 0], solver=solver,
                       iterations=tail[..., 1].astype(int), converged=tail[..., 2] > 0.5,
                       residual_norms=None, noise_std=tail[..., 3],
                       regularizer=options["regularizer"],
                       message="frames deconvolved in parallel by the in-memory deconvolve; "
                               "damp, iterations, converged and noise_std (NaN: not used) "
                               "are per frame (dask arrays); no residual_norms")


def _frames_solver(kernel, frame_shape, image, options) -> str:
    """The in-memory deconvolve's checks of a frame's options, and its solver, before the
    tasks run (stand-ins of the frame's shape for the arrays: their values are checked
    per frame)."""
    import warnings
    from ._deconvolve import (_check_applicable, _check_uses, _choose_solver, _parse, _Setup,
                              _solver_table)
    stand_in = {name: None if options[name] is None else np.ones(shape)
                for name, shape in (("weights", frame_shape), ("x0", image))}
    background = options["background"]
    stand_in["background"] = background if np.ndim(background) == 0 and \
        not is_dask_array(background) else np.ones(frame_shape)
    damp = options["damp"]
    stand_in["damp"] = damp if isinstance(damp, str) or np.ndim(damp) == 0 else \
        np.asarray(damp, float).ravel()[0]
    parsed = _parse(np.zeros(frame_shape), kernel, **{**options, **stand_in})
    setup = _Setup(kernel, frame_shape, parsed)
    chosen = _choose_solver(setup, parsed)
    with warnings.catch_warnings():  # the frames' tasks warn
        warnings.simplefilter("ignore")
        _check_uses(chosen, _solver_table(), parsed)
    _check_applicable(chosen, setup, parsed)
    return chosen


@_one_thread
def _frame_block(kernel, given, damps, per_frame, nf, pack, yb, *extra, block_id=None):
    from ._deconvolve import deconvolve

    frame = yb.reshape(yb.shape[nf:])
    kwargs = dict(given)
    for name, value in zip(per_frame, extra):
        kwargs[name] = value.reshape(value.shape[nf:])
    if damps is not None:
        kwargs["damp"] = float(damps[tuple(block_id[:nf])])
    result = deconvolve(frame, kernel, **kwargs)
    sigma = np.nan if result.noise_std is None else result.noise_std
    out = np.concatenate([np.asarray(result.x, dtype=pack).ravel(),
                          [result.damp, result.iterations, float(result.converged), sigma]])
    return out.reshape((1,) * nf + (-1,))
