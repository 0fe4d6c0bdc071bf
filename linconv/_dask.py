"""Arrays larger than memory: linconv's exact operators and deconvolution on dask.

Every operator factors as ``A = S . C_valid . P`` (see :mod:`linconv._geometry`);
on a chunked array each factor goes where it is exact:

- ``P``, the boundary extension, at the array's *outer* edges only: the zero
  boundary with :func:`dask.array.pad`; the others by gathering the margins
  through the geometry's own extension map (numpy.pad's semantics, pads wider
  than the array included).  dask's ``map_overlap(boundary="reflect")`` is
  numpy's "symmetric", and a per-chunk "wrap" wraps each chunk onto itself, so
  neither is used.
- ``C_valid`` locally: :func:`dask.array.map_overlap` with ``boundary="none"``
  and an asymmetric halo, each block running linconv's in-memory engine on a
  valid-mode geometry of the block's size.
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
margins of the padded domain are folded back onto the edges (``P^H``).

dask is imported here only; ``import linconv`` never imports this module.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ._engines import set_workers
from ._geometry import AxisGeometry, Geometry
from ._operator import GeometryOperator, ShapedOperator, _View, operator_dtype
from ._sparse import correlation_weights
from ._validation import as_kernel, as_method

__all__ = ["AxisPlan", "ChunkedCorrelation", "apply", "convolve_dask", "deconvolve_dask",
           "is_dask_array"]

_NUMPY_PAD = {"zero": "constant", "wrap": "wrap", "reflect": "reflect",
              "symmetric": "symmetric", "edge": "edge"}


def is_dask_array(x) -> bool:
    """True for a dask array, detected without importing dask."""
    return type(x).__module__.partition(".")[0] == "dask"


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
@functools.lru_cache(maxsize=32)
def _local_operator(geometry: Geometry, weights_bytes: bytes, shape, dtype: str,
                    method: str) -> GeometryOperator:
    """The in-memory operator of one block's valid-mode geometry (cached per process)."""
    weights = np.frombuffer(weights_bytes, dtype=dtype).reshape(shape)
    return GeometryOperator(geometry, weights, method, np.dtype(dtype))


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
        return cls(op.geometry, weights, op.dtype), adjoint, conjugate

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
        da = _da()
        g = self.geometry
        s0 = self._spatial0(lead)
        if all(len(c) == 1 for c in x.chunks[s0:]):
            return self._whole(x, s0, g.output_shape, False)
        plans = [AxisPlan.for_input(ax, x.chunks[s0 + a]) for a, ax in enumerate(g.axes)]
        xp = self._extend(x, s0)
        xp = _rechunk(xp, xp.chunks[:s0] + tuple(p.padded_chunks for p in plans))
        depth = {s0 + a: p.forward_depth for a, p in enumerate(plans)}
        channel = ((g.channels.out_channels,),) if g.channels else ()
        chunks = x.chunks[:lead] + channel + tuple(p.out_chunks for p in plans)
        return da.map_overlap(
            functools.partial(_forward_block, self, tuple(plans), s0), xp, depth=depth,
            boundary="none", trim=False, allow_rechunk=False, chunks=chunks, dtype=x.dtype,
            meta=np.empty((0,) * x.ndim, x.dtype))

    def _adjoint(self, y, lead):
        da = _da()
        g = self.geometry
        s0 = self._spatial0(lead)
        if all(len(c) == 1 for c in y.chunks[s0:]):
            return self._whole(y, s0, g.input_shape, True)
        plans = [AxisPlan.for_output(ax, y.chunks[s0 + a]) for a, ax in enumerate(g.axes)]
        y = _rechunk(y, y.chunks[:s0] + tuple(p.out_chunks for p in plans))
        depth = {s0 + a: p.adjoint_depth for a, p in enumerate(plans)}
        channel = ((g.channels.in_channels,),) if g.channels else ()
        chunks = y.chunks[:lead] + channel + tuple(p.padded_chunks for p in plans)
        dtype = np.result_type(y.dtype, self.dtype)
        xp = da.map_overlap(
            functools.partial(_adjoint_block, self, tuple(plans), s0), y, depth=depth,
            boundary="none", trim=False, allow_rechunk=False, chunks=chunks, dtype=dtype,
            meta=np.empty((0,) * y.ndim, dtype))
        return self._fold(xp, s0, plans)

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
        da = _da()
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
def _forward_block(chunked, plans, s0, block, block_id=None):
    """One output block: the valid correlation of the padded samples it reads."""
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
def _adjoint_block(chunked, plans, s0, block, block_id=None):
    """One padded block of ``C^H S^T y``: the local adjoint of the outputs reaching into it."""
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

    - ``solver="cg"`` (also what "auto" picks): CGLS, conjugate gradients on the
      normal equations of ``min ||sqrt(w) (A x + b - y)||^2 + damp^2 ||x||^2``
      written against dask arrays.  The iterates are persisted every iteration
      (the graph does not grow); each iteration applies ``A`` and ``A^H`` once
      and synchronises once, for its inner products, the stopping rule
      ``||A^H r_k|| <= tol * ||A^H y||`` (scipy's cg rule) and the residual
      norm.  No preconditioner.
    - ``solver="richardson-lucy"`` (``"rl"``): ``x <- x * A^H(w y / (A x + b)) / A^H w``
      from the flat image of the data's flux (``sum(w y) / sum(A^H w)``) or
      `x0`; elementwise and local, no global reduction but the residual norm
      ``||sqrt(w) (A x_k + b - y)||`` of the stopping rule.  With `maxiter`
      None it stops when that norm decreases by less than ``max(tol, 1e-3)``
      relatively in an iteration (at most 500 iterations).  ``damp`` must be
      "auto" or 0 (no regularisation).
    - ``damp="auto"``: the in-memory :func:`linconv.deconvolve` with the same
      options on a central crop of at most 1024 samples per axis chooses the
      damp (its noise estimate and discrepancy principle, per sample, carry
      over to the whole image); a number is used as given.

    A stack of frames (``y.ndim > kernel.ndim``) runs the in-memory
    :func:`linconv.deconvolve` on every frame in parallel (any of its
    solvers and options but `callback` and `progress`); `x`, and
    `damp`, `iterations` and `converged` (one per frame) are then lazy dask
    arrays: compute them together, ``dask.compute(result.x, result.damp)``.

    Returns
    -------
    DeconvolutionResult
        `x` a dask array, float32 when `y` is float32, else float64 (complex
        when `y` or `kernel` is).
    """
    from ._deconvolve import DeconvolutionResult

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
    if y.ndim > kernel.ndim:
        return _deconvolve_frames(y, kernel, options, DeconvolutionResult)

    if not isinstance(solver, str) or solver not in _DASK_SOLVERS:
        raise ValueError(f"`solver` on a dask array must be 'auto', 'cg' or 'richardson-lucy' "
                         f"('rl'); got {solver!r} (other solvers: compute `y` into memory, or "
                         "pass a stack of frames)")
    solver = "richardson-lucy" if solver in ("rl", "richardson-lucy") else "cg"
    if regularizer != "tikhonov":
        raise ValueError(f"`regularizer` on a dask array must be 'tikhonov'; got {regularizer!r}")
    if bounds is not None:
        raise ValueError("`bounds` are not supported on a dask array; use "
                         "solver='richardson-lucy' for a non-negative image")
    if not (isinstance(preconditioner, str) and preconditioner == "auto") \
            and preconditioner is not None:
        raise ValueError("`preconditioner` is not supported on a dask array; pass 'auto' "
                         "(none is used) or None")
    if maxiter is not None and (not isinstance(maxiter, (int, np.integer)) or maxiter < 1):
        raise ValueError(f"`maxiter` must be a positive integer; got {maxiter!r}")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"`tol` must be a number in (0, 1); got {tol!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable; got {type(callback).__name__}")
    if not np.isscalar(background) or not np.isfinite(background):
        raise ValueError(f"`background` must be a finite number; got {background!r}")

    geometry = Geometry.from_output(kernel.shape, y.shape, mode, boundary)
    real = y.dtype.kind != "c" and kernel.dtype.kind != "c"
    precision = np.float32 if y.dtype in (np.float32, np.complex64) else np.float64
    dtype = np.dtype(precision) if real else np.result_type(precision, np.complex64)
    op = ChunkedCorrelation(geometry, correlation_weights(kernel, correlate), dtype)
    y = y.astype(dtype)
    w = None
    if weights is not None:
        w = weights if is_dask_array(weights) else da.from_array(np.asarray(weights),
                                                                  chunks=y.chunks)
        if w.shape != y.shape:
            raise ValueError(f"`weights` must have the shape of `y` {y.shape}; got {w.shape}")
        w = w.astype(dtype.type(0).real.dtype).rechunk(y.chunks)
    if x0 is not None:
        x0 = x0 if is_dask_array(x0) else da.asarray(np.asarray(x0))
        if x0.shape != geometry.input_shape:
            raise ValueError(f"`x0` must have the image's shape {geometry.input_shape}; got "
                             f"{x0.shape}")
        x0 = x0.astype(dtype)

    messages = []
    if solver == "richardson-lucy":
        if not (damp == "auto" or (np.isscalar(damp) and damp == 0)):
            raise ValueError(f"`damp` must be 'auto' or 0 for richardson-lucy on a dask "
                             f"array (no regularisation there); got {damp!r}")
        damp, sigma = 0.0, noise_std
    elif isinstance(damp, str):
        if damp != "auto":
            raise ValueError(f"`damp` must be a non-negative number or 'auto'; got {damp!r}")
        damp, sigma, how = _auto_damp(y, kernel, w, options)
        messages.append(how)
    else:
        if not np.isscalar(damp) or not np.isfinite(damp) or damp < 0:
            raise ValueError(f"`damp` must be a non-negative number or 'auto'; got {damp!r}")
        damp, sigma = float(damp), noise_std
    messages.append(f"solver {solver} on dask")
    run = _richardson_lucy if solver == "richardson-lucy" else _cgls
    x, norms, iterations, converged = run(op, y, w, float(background), damp, maxiter, tol,
                                          x0, callback, progress)
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
    """damp="auto": the in-memory deconvolve on a central crop of `y` chooses it."""
    from ._deconvolve import deconvolve

    crop = _central_crop(y.shape)
    given = {key: value for key, value in options.items()
             if key in ("mode", "boundary", "correlate", "noise_std", "regularizer", "tol")
             and not _is_default(key, value)}
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


def _norm2(a):
    return (abs(a) ** 2).sum() if a.dtype.kind == "c" else (a * a).sum()


def _persist(*arrays):
    import dask
    return dask.persist(*arrays)


def _progress(progress, maxiter, label):
    if not progress:
        return None
    from ._deconvolve import _Progress
    return _Progress(maxiter, label)


def _cgls(op, y, w, background, damp, maxiter, tol, x0, callback, progress):
    """CGLS on ``min ||sqrt(w) (A x + b - y)||^2 + damp^2 ||x||^2`` with dask arrays."""
    import dask

    da = _da()
    sw = None if w is None else da.sqrt(w)
    weigh = (lambda v: v) if sw is None else (lambda v: sw * v)
    data = weigh(y - background) if background else weigh(y)
    d2 = damp * damp
    rhs = op.adjoint(weigh(data))
    if x0 is None:
        x = da.zeros_like(rhs)
        r, s = data, rhs
    else:
        x = x0.rechunk(rhs.chunks)
        r = data - weigh(op.forward(x))
        s = op.adjoint(weigh(r)) - d2 * x
    p = s
    gamma = _norm2(s)
    bnorm2 = gamma if x0 is None else _norm2(rhs)
    x, r, p, gamma, bnorm2 = _persist(x, r, p, gamma, bnorm2)
    gamma_value, bnorm = float(gamma.compute()), math.sqrt(float(bnorm2.compute()))
    maxiter = 1000 if maxiter is None else int(maxiter)
    norms, converged, k = [], gamma_value == 0, 0
    bar = _progress(progress, maxiter, "deconvolve (cg, dask)")
    try:
        while not converged and k < maxiter:
            q = weigh(op.forward(p))
            alpha = gamma / (_norm2(q) + d2 * _norm2(p))
            x = x + alpha * p
            r = r - alpha * q
            s = op.adjoint(weigh(r)) - d2 * x if d2 else op.adjoint(weigh(r))
            gamma_new = _norm2(s)
            p = s + (gamma_new / gamma) * p
            residual2 = _norm2(r) + d2 * _norm2(x)
            x, r, p, gamma, residual2 = _persist(x, r, p, gamma_new, residual2)
            gamma_value, residual_value = dask.compute(gamma, residual2)
            k += 1
            norms.append(math.sqrt(float(residual_value)))
            if callback is not None:
                callback(x)
            if bar is not None:
                bar.update(k, norms[-1])
            converged = math.sqrt(float(gamma_value)) <= tol * bnorm
    finally:
        if bar is not None:
            bar.close()
    return x, norms, k, bool(converged)


def _safe_divide(num, den):
    da = _da()
    ok = den > 0
    return da.where(ok, num / da.where(ok, den, 1), 0)


def _richardson_lucy(op, y, w, background, damp, maxiter, tol, x0, callback, progress):
    """Richardson-Lucy ``x <- x * A^H(w y / (A x + b)) / A^H w`` with dask arrays."""
    import dask

    da = _da()
    if float(y.min().compute()) < 0:
        raise ValueError("`y` must be non-negative for richardson-lucy (Poisson data)")
    ones = da.ones_like(y) if w is None else w
    wy = y if w is None else w * y
    den = op.adjoint(ones)
    if x0 is None:
        flux = _safe_divide(wy.sum(), den.sum())
        x = da.ones_like(den) * flux
    else:
        if float(x0.real.min().compute()) < 0:
            raise ValueError("`x0` must be non-negative for richardson-lucy")
        x = x0.rechunk(den.chunks)
    e = op.forward(x) + background
    den, x, e = _persist(den, x, e)
    stop_rule = maxiter is None
    maxiter = 500 if maxiter is None else int(maxiter)
    rtol = max(tol, 1e-3)
    norms, converged, k = [], False, 0
    bar = _progress(progress, maxiter, "deconvolve (richardson-lucy, dask)")
    try:
        while k < maxiter:
            x = x * _safe_divide(op.adjoint(_safe_divide(wy, e)), den)
            e = op.forward(x) + background
            misfit = e - y
            norm2 = _norm2(misfit if w is None else da.sqrt(w) * misfit)
            x, e, norm2 = _persist(x, e, norm2)
            k += 1
            norms.append(math.sqrt(float(norm2.compute())))
            if callback is not None:
                callback(x)
            if bar is not None:
                bar.update(k, norms[-1])
            if stop_rule and k > 1 and norms[-2] - norms[-1] <= rtol * norms[-2]:
                converged = True
                break
    finally:
        if bar is not None:
            bar.close()
    return x, norms, k, converged or not stop_rule


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
    for name, shape in (("weights", y.shape), ("x0", y.shape[:nf] + image)):
        value = options[name]
        if value is None:
            continue
        value = value if is_dask_array(value) else da.from_array(np.asarray(value))
        if value.shape != shape:
            raise ValueError(f"`{name}` must have shape {shape} for this stack; got "
                             f"{value.shape}")
        arrays.append(value.rechunk(layout))
        per_frame.append(name)
    given = {key: value for key, value in options.items()
             if key not in per_frame and (key == "damp" or not _is_default(key, value))}
    complex_ = y.dtype.kind == "c" or kernel.dtype.kind == "c"
    pack = np.complex128 if complex_ else np.float64
    packed = da.map_blocks(
        functools.partial(_frame_block, kernel, given, tuple(per_frame), nf, image, pack),
        *arrays, chunks=y.chunks[:nf] + ((size + 3,),), drop_axis=list(range(nf + 1, y.ndim)),
        dtype=pack, meta=np.empty((0,) * (nf + 1), pack))
    precision = np.float32 if y.dtype in (np.float32, np.complex64) else np.float64
    xdtype = np.result_type(precision, np.complex64) if complex_ else np.dtype(precision)
    x = packed[..., :size].reshape(y.shape[:nf] + image).astype(xdtype)
    tail = packed[..., size:].real
    return result_type(x=x, damp=tail[..., 0], solver=str(options["solver"]),
                       iterations=tail[..., 1].astype(int), converged=tail[..., 2] > 0.5,
                       residual_norms=np.array([]), noise_std=options["noise_std"],
                       regularizer=options["regularizer"],
                       message="frames deconvolved in parallel by the in-memory deconvolve; "
                               "damp, iterations, converged are per frame (dask arrays)")


def _frame_block(kernel, given, per_frame, nf, image, pack, yb, *extra):
    from ._deconvolve import deconvolve

    frame = yb.reshape(yb.shape[nf:])
    kwargs = dict(given)
    for name, value in zip(per_frame, extra):
        kwargs[name] = value.reshape(value.shape[nf:])
    result = deconvolve(frame, kernel, **kwargs)
    out = np.concatenate([np.asarray(result.x, dtype=pack).ravel(),
                          [result.damp, result.iterations, float(result.converged)]])
    return out.reshape((1,) * nf + (-1,))
