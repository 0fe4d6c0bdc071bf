"""Plans: sizes in, a frozen recipe out.

A plan says *how* one engine runs the linear map a :class:`~linconv._geometry.Geometry`
describes, and why that engine was chosen.  It is computed from the geometry
(and the list of kernel taps that are not all zero) alone, on first use,
holds every number the engine needs, and is frozen and printable, so the
engines have no index arithmetic of their own and a plan can be checked
without arrays (as opt_einsum's ``contract_path``).  ``op.plan`` shows it.

- :class:`SparsePlan`: the CSR matrix (:mod:`linconv._pattern`).
- :class:`DirectPlan`: scipy.ndimage passes (:class:`NdimagePass`), split into
  bands of rows over the threads (:class:`BandPlan`); the adjoint's passes
  cover the input's window and the frame slabs folded back by ``P^T``.
- :class:`FFTPlan`: the whole-signal transform (shape, kernel offsets, crops)
  or overlap-save blocks (:class:`OverlapSavePlan`) for long 1-D signals.
- :class:`LayerPlan`: the two spatial-domain layer engines, which share one
  stride-free (polyphase) form of the correlation:

  - the padded input is split into ``prod(strides)`` phases laid out on a grid
    of ``ceil(padded / stride)`` samples per axis, flattened in C order per row
    (a row is one channel of one batch item, or for the GEMM a channel over the
    whole batch);
  - tap ``t`` reads phase ``phase[t]`` at the constant flat offset ``offset[t]``,
    so every output on the grid is ``sum_t w_t * phase[t][q + offset[t]]``; the
    grid positions past the output shape are computed and dropped (their reads
    stay inside the grid plus ``tail`` samples of zeros);
  - the adjoint runs the same numbers in reverse: the output is placed on the
    grid (``S^T``), each phase gathers ``conj(w_t) * y[q + tail - offset[t]]``
    from the grid shifted by ``tail`` (the full correlation ``C^H``), and the
    phases go back onto the input through the same placements (``P^T``).

  Engines: ``"gemm"`` mixes channels with matrix products: per phase of the
  result and chunk of the grid, the taps' shifted copies of the channels are
  stacked (im2col on a cache-sized chunk) and multiplied by the weights of all
  those taps at once; ``"depthwise"`` (one input channel per group) runs
  batched single-channel correlation as one multiply-add pass per tap (BLAS
  ``axpy``) on cache-sized blocks of channels, placed, run and cropped one
  block at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft as sp_fft

from ._geometry import Geometry

__all__ = ["SparsePlan", "NdimagePass", "BandPlan", "DirectPlan", "direct_plan",
           "OverlapSavePlan", "FFTPlan", "fft_plan", "LayerPlan", "layer_plan", "placements",
           "polyphase"]

# scipy.ndimage's names for linconv's boundaries
NDIMAGE_MODE = {"zero": "constant", "wrap": "grid-wrap", "reflect": "mirror",
                "symmetric": "reflect", "edge": "nearest"}


def _shape(shape) -> str:
    return "x".join(map(str, shape))


@dataclass(frozen=True)
class SparsePlan:
    """The CSR matrix, built from the pattern on first use; the adjoint reads its
    CSC transpose (a view)."""

    engine: str
    reason: str
    entries: int  # upper bound on the stored entries

    def __str__(self) -> str:
        return (f"SparsePlan: engine 'sparse' ({self.reason})\n"
                f"  at most {self.entries} stored entries, built on first use")


# -- direct: scipy.ndimage passes, banded over the threads ----------------------------
@dataclass(frozen=True)
class BandPlan:
    """Rows of one ndimage pass split over threads.

    Band ``b`` computes rows ``edges[b]:edges[b + 1]`` as if it were the whole
    array (ndimage extends it by the mode); then the rows that read across a
    band seam, or for the periodic mode across the array's edge, are redone:
    rows ``f0:f1`` of the output are rows ``lead:lead + f1 - f0`` of the
    correlation of the input rows ``source`` (gathered, wrapping around).
    """

    edges: tuple[int, ...]
    redo: tuple  # ((f0, f1, source rows), ...)
    lead: int


@dataclass(frozen=True)
class NdimagePass:
    """One correlation ``y[i] = sum_m w[m] * ext(x)[i + m - lead]`` by scipy.ndimage.

    The input (shape `in_shape` after the batch axis) is first cut to `crop`
    and zero-padded by `pad` when the mode is "constant", so that every lead
    lies in ``0..span - 1`` (what ndimage's origin can express) and no sample
    is read that is not needed; `origin` is ndimage's ``lead - span // 2`` and
    the first `out_shape` outputs are kept.
    """

    mode: str
    out_shape: tuple[int, ...]
    origin: tuple[int, ...]
    crop: tuple[tuple[int, int], ...] | None
    pad: tuple[tuple[int, int], ...] | None
    lead: int   # lead on the first spatial axis (bands split it)
    span: int   # kernel span on that axis
    rows: int   # its length after the crop and pad
    size: int   # samples of one batch item after the crop and pad

    def band_count(self, workers: int, batch: int, band_min: int) -> int:
        """Bands worth running: one per worker, at least `band_min` samples and two
        kernel spans of rows each."""
        return max(min(workers, batch * self.size // band_min, self.rows // (2 * self.span)), 1)

    def bands(self, count: int) -> BandPlan:
        """The :class:`BandPlan` of `count` bands."""
        rows, lead = self.rows, self.lead
        edges = tuple(int(e) for e in np.linspace(0, rows, count + 1).astype(int))
        after = self.span - 1 - lead  # rows read past the output row
        redo = [(e - after, e + lead) for e in edges[1:-1]]
        if self.mode == "grid-wrap":
            redo += [(0, lead), (rows - after, rows)]
        return BandPlan(edges, tuple((f0, f1, np.arange(f0 - lead, f1 + after) % rows)
                                     for f0, f1 in redo if f1 > f0), lead)

    def __str__(self) -> str:
        prep = "" if self.crop is None else \
            f", input cut to {[tuple(c) for c in self.crop]} and zero-padded by {list(self.pad)}"
        return (f"ndimage mode {self.mode!r}, origin {self.origin}, "
                f"{_shape(self.out_shape)} outputs{prep}")


def ndimage_pass(in_shape, leads, spans, out_shape, mode: str, zero_lead: bool = False):
    """The :class:`NdimagePass` of ``y[i] = sum_m w[m] * ext(x)[i + m - lead]``, ``i < out_shape``.

    For "constant" the input is cut to the samples read and zero-padded so each
    lead lies in ``0..span - 1`` (0 with `zero_lead`); otherwise leads must
    already be in range and the outputs inside the input.

    Examples
    --------
    >>> p = ndimage_pass((10,), (-2,), (3,), (4,), "constant")  # skip 2 samples
    >>> p.crop, p.pad, p.origin
    (((2, 8),), ((0, 0),), (-1,))
    """
    crop = pad = None
    shape = tuple(in_shape)
    if mode == "constant":
        crop, pad, leads, shape = [], [], list(leads), []
        for axis, (lead, span, n_out, n) in enumerate(zip(leads, spans, out_shape, in_shape)):
            front = -min(lead, 0)  # lead < 0: the first -lead samples are never read
            pad_lo = max(lead if zero_lead else lead - (span - 1), 0)
            # nor those past the last output's reach (keep n_out if there, sparing a pad)
            stop = min(n, max(n_out + span - 1 - lead, front + n_out))
            leads[axis] = lead + front - pad_lo
            length = max(stop - front, 0) + pad_lo
            crop.append((front, max(stop, front)))
            pad.append((pad_lo, max(n_out - length, 0)))
            shape.append(length + pad[-1][1])
        crop, pad = tuple(crop), tuple(pad)
        if all(p == (0, 0) for p in pad) and all(c == (0, n) for c, n in zip(crop, in_shape)):
            crop = pad = None
    return NdimagePass(mode, tuple(out_shape),
                       tuple(int(lead - span // 2) for lead, span in zip(leads, spans)),
                       crop, pad, int(leads[0]), int(spans[0]), int(shape[0]),
                       math.prod(shape))


@dataclass(frozen=True)
class FoldedWindow:
    """One pass of the direct adjoint: the full correlation on the window of the padded
    domain at `starts` of `shape`, then (for a frame slab) its later axes folded by
    ``P^T`` and the slab added onto the input samples `targets` along `axis`."""

    passes: NdimagePass
    starts: tuple[int, ...]
    shape: tuple[int, ...]
    axis: int | None          # None: the input's own window
    targets: np.ndarray | None


@dataclass(frozen=True)
class DirectPlan:
    """How the direct engine runs a single-channel geometry with scipy.ndimage.

    Forward: one pass (`forward`) on the input itself when ndimage's own
    extension is the boundary rule (`native`: padding within the kernel span,
    outputs inside the input), else on the input extended first (``P``); then
    every stride-th output (``S``).  Adjoint: zero insertion (``S^T``), then
    the full correlation with the flipped conjugate kernel on the input's
    window of the padded domain and on each frame slab of the padding
    (`adjoint`), the slabs folded back onto the input (``P^T``).
    """

    engine: str
    reason: str
    native: bool
    forward: NdimagePass
    strided: bool
    adjoint: tuple[FoldedWindow, ...]

    def __str__(self) -> str:
        lines = [f"DirectPlan: engine 'direct' ({self.reason})",
                 f"  forward: {'on the input as is' if self.native else 'input extended first'}"
                 f", {self.forward}" + (", then strided" if self.strided else ""),
                 f"  adjoint: {len(self.adjoint)} pass(es), the input's window"
                 + (" and the frame slabs folded back" if len(self.adjoint) > 1 else "")]
        return "\n".join(lines)


def direct_plan(geometry: Geometry, reason: str = "") -> DirectPlan:
    """The :class:`DirectPlan` of a single-channel `geometry` (sizes only).

    Examples
    --------
    >>> g = Geometry.from_args((3, 3), (64, 64), "same", "reflect")
    >>> print(direct_plan(g, "example"))  # doctest: +NORMALIZE_WHITESPACE
    DirectPlan: engine 'direct' (example)
      forward: on the input as is, ndimage mode 'mirror', origin (0, 0), 64x64 outputs
      adjoint: 5 pass(es), the input's window and the frame slabs folded back
    """
    g = geometry
    spans = tuple(ax.span for ax in g.axes)
    native = g.boundary == "zero" or g.pads_within_span
    if native:
        forward = ndimage_pass(g.spatial_input_shape, [ax.lo for ax in g.axes], spans,
                               g.sampled_shape, NDIMAGE_MODE[g.boundary])
    else:
        forward = ndimage_pass(g.padded_shape, [0] * g.ndim, spans, g.sampled_shape, "constant")
    adjoint = []
    for axis, starts, shape, targets in _padded_windows(g):
        leads = [span - 1 - start for span, start in zip(spans, starts)]  # C^H: full correlation
        adjoint.append(FoldedWindow(ndimage_pass(g.sampled_shape, leads, spans, shape,
                                                 "constant"), starts, shape, axis, targets))
    return DirectPlan("direct", reason, native, forward,
                      any(ax.stride > 1 for ax in g.axes), tuple(adjoint))


def _padded_windows(g: Geometry):
    """Cut the padded domain into the input's window and the frame slabs, for ``P^T``.

    Yields ``(axis, starts, shape, targets)``: the window's first padded index
    and size per axis, and, for a frame slab, the spatial `axis` whose padding
    it covers and the input indices its samples fold onto along it (None for
    the input's window).  Slab ``a`` spans the input's window on axes before
    ``a`` and the whole padded range on axes after it, so after folding those
    later axes every padded sample is folded exactly once.
    """
    yield None, tuple(ax.lo for ax in g.axes), g.spatial_input_shape, None
    if g.boundary == "zero":
        return
    for a, ax in enumerate(g.axes):
        for start, stop in ((0, ax.lo), (ax.lo + ax.n, ax.padded_length)):
            if stop > start:
                starts = [b.lo for b in g.axes[:a]] + [start] + [0] * (g.ndim - a - 1)
                shape = list(g.spatial_input_shape[:a]) + [stop - start] + list(
                    g.padded_shape[a + 1:])
                yield a, tuple(starts), tuple(shape), \
                    ax.extension_index(np.arange(start, stop), g.boundary)


# -- fft: the whole signal, or overlap-save blocks --------------------------------------
@dataclass(frozen=True)
class OverlapSavePlan:
    """``y[i] = sum_t k[t] * x[i + t]``, ``i < out_len``, by `count` blocks of `block`
    samples `step` apart (the input zero-padded to `need` samples)."""

    block: int
    step: int
    count: int
    need: int
    out_len: int


def overlap_save(block: int, span: int, out_len: int) -> OverlapSavePlan:
    step = block - span + 1
    count = -(-out_len // step)
    return OverlapSavePlan(block, step, count, (count - 1) * step + block, out_len)


@dataclass(frozen=True)
class FFTPlan:
    """How the FFT engine runs a geometry (the convolution theorem).

    Whole signal: transforms of `shape` (``next_fast_len`` of the padded
    shape: the circular correlation equals the linear one on every output
    read), the kernel placed at `offsets` (the zero boundary folds its
    padding into the kernel, so the input is transformed as is; other
    boundaries extend it first, `extend`).  The forward keeps every stride-th
    of the first outputs; the adjoint zero-inserts (``S^T``), applies the
    conjugate spectrum, keeps the first `adjoint_crop` samples and folds the
    padding back (``P^T``) when `extend`.  Long 1-D signals with short kernels
    run overlap-save blocks instead (`blocks`: forward, adjoint; the forward
    input always extended, the adjoint's input aligned by `adjoint_pass`).
    """

    engine: str
    reason: str
    shape: tuple[int, ...]
    offsets: tuple[int, ...]
    extend: bool
    strided: bool
    adjoint_crop: tuple[int, ...]
    blocks: tuple[OverlapSavePlan, OverlapSavePlan] | None = None
    adjoint_pass: NdimagePass | None = None

    @property
    def transform_size(self) -> int:
        """Samples transformed per channel and item (all blocks together)."""
        if self.blocks:
            return self.blocks[0].block * self.blocks[0].count
        return math.prod(self.shape)

    def __str__(self) -> str:
        lines = [f"FFTPlan: engine 'fft' ({self.reason})"]
        if self.blocks:
            f, a = self.blocks
            lines.append(f"  overlap-save: blocks of {f.block} every {f.step} samples, "
                         f"{f.count} forward / {a.count} adjoint")
        else:
            lines.append(f"  transforms of {_shape(self.shape)}, kernel at offsets "
                         f"{self.offsets}, input {'extended first' if self.extend else 'as is'}")
        if self.strided:
            lines.append("  strided: every stride-th output kept (adjoint: zeros inserted)")
        return "\n".join(lines)


OLS_MIN_BLOCK = 4096  # shortest overlap-save block (cache-sized transforms)


def fft_plan(geometry: Geometry, real: bool, reason: str = "") -> FFTPlan:
    """The :class:`FFTPlan` of `geometry` for a real (or complex) kernel (sizes only).

    Examples
    --------
    >>> g = Geometry.from_args((5,), (100_000,), "same")
    >>> print(fft_plan(g, True, "example"))
    FFTPlan: engine 'fft' (example)
      overlap-save: blocks of 4096 every 4092 samples, 25 forward / 25 adjoint
    """
    g = geometry
    zero = g.boundary == "zero"
    strided = any(ax.stride > 1 for ax in g.axes)
    crop = g.spatial_input_shape if zero else g.padded_shape
    if g.ndim == 1 and g.channels is None:
        ax = g.axes[0]
        block = sp_fft.next_fast_len(max(8 * ax.span, OLS_MIN_BLOCK), real=real)
        if 4 * block <= ax.padded_length:
            lead = ax.span - 1 - (ax.lo if zero else 0)  # C^H: full correlation
            return FFTPlan(
                "fft", reason, (block,), (0,), not zero, strided, crop,
                (overlap_save(block, ax.span, ax.sampled_length),
                 overlap_save(block, ax.span, crop[0])),
                ndimage_pass(g.sampled_shape, (lead,), (ax.span,), crop, "constant",
                             zero_lead=True))
    shape = tuple(sp_fft.next_fast_len(n, real=real) for n in g.padded_shape)
    offsets = tuple(ax.lo for ax in g.axes) if zero else (0,) * g.ndim
    return FFTPlan("fft", reason, shape, offsets, not zero, strided, crop)


# -- layers: the polyphase form ------------------------------------------------------------
def polyphase(geometry: Geometry):
    """Stride-free form of the correlation, for shifted GEMMs.

    The padded input is split into ``prod(strides)`` phases (sample ``q``
    of axis ``a`` goes to phase ``q % s`` at position ``q // s``) laid out on
    a grid of ``ceil(padded / s)`` per axis.  Tap ``j`` then reads one phase
    at a constant flat offset of that grid.  Returns ``(grid_shape,
    phase_of_tap, offset_of_tap)``, both flat over the taps in C order.
    """
    g = geometry
    grid = tuple(-(-ax.padded_length // ax.stride) for ax in g.axes)
    grid_strides = np.cumprod((1,) + grid[:0:-1])[::-1]
    phase_strides = np.cumprod((1,) + g.strides[:0:-1])[::-1]
    phase = offset = 0
    for axis, ax in enumerate(g.axes):
        reach = np.arange(ax.k) * ax.dilation
        shape = [1] * g.ndim
        shape[axis] = ax.k
        phase = phase + (reach % ax.stride * phase_strides[axis]).reshape(shape)
        offset = offset + (reach // ax.stride * grid_strides[axis]).reshape(shape)
    full = g.kernel_shape
    return (grid, np.broadcast_to(phase, full).reshape(-1),
            np.broadcast_to(offset, full).reshape(-1))


def placements(geometry: Geometry, extended: bool):
    """Where the input's samples sit on the phase grids.

    Returns one ``(phase, source, target)`` triple per phase that holds input
    samples: ``grid[phase][target] = x[source]`` (slices over the trailing
    spatial axes) writes the padded input into the phases; reading the same
    slices back is its transpose.  With `extended`, the source is the input
    already extended by the boundary rule (the whole padded array); otherwise
    the input itself (the zero boundary: the rest of the grid is zero).

    Padded sample ``q`` of an axis with stride ``s`` goes to phase ``q % s`` at
    grid position ``q // s``; input sample ``i`` is padded sample ``i + lo``.
    """
    per_axis = []
    for ax in geometry.axes:
        lo, n = (0, ax.padded_length) if extended else (ax.lo, ax.n)
        entries = []
        for r in range(ax.stride):
            first = (r - lo) % ax.stride  # first input sample of phase r
            if first < n:
                count = len(range(first, n, ax.stride))
                start = (first + lo) // ax.stride
                entries.append((r, slice(first, n, ax.stride), slice(start, start + count)))
        per_axis.append(entries)
    phase_strides = np.cumprod((1,) + geometry.strides[:0:-1])[::-1]
    out = []
    for combo in np.ndindex(*[len(e) for e in per_axis]):
        picks = [per_axis[a][i] for a, i in enumerate(combo)]
        phase = int(sum(r * st for (r, _, _), st in zip(picks, phase_strides)))
        out.append((phase, tuple(p[1] for p in picks), tuple(p[2] for p in picks)))
    return tuple(out)


@dataclass(frozen=True)
class LayerPlan:
    """How a layer engine runs one geometry (see the module docs).

    Attributes
    ----------
    engine : {"gemm", "depthwise"}
    reason : str
        Why "auto" (or "direct") chose this engine.
    grid : tuple of int
        Grid of one phase, per spatial axis.
    phases : int
        Number of stride phases, ``prod(strides)``.
    taps : tuple of int
        Flat (C-order) kernel taps run, those with a non-zero weight somewhere.
    phase, offset : tuple of int
        Phase read by each of `taps` and its flat offset on the grid.
    tail : int
        Zeros after each flattened array so the last reads stay in bounds.
    extend : bool
        True when the input is extended by the boundary rule before it is
        placed (non-zero boundaries); the zero boundary places the input itself.
    placements : tuple
        ``(phase, source slices, grid slices)`` per phase holding samples
        (:func:`placements`).
    output_shape : tuple of int
        The part of the grid that is the output (from position 0 on every axis).
    block : int
        The depthwise engine's elements per block: channels are run in blocks
        of about this size (:meth:`channel_blocks`), and a longer row in pieces
        of this length.  The GEMM's bytes per chunk of shifted copies
        (:meth:`columns`).
    """

    engine: str
    reason: str
    grid: tuple[int, ...]
    phases: int
    taps: tuple[int, ...]
    phase: tuple[int, ...]
    offset: tuple[int, ...]
    tail: int
    extend: bool
    placements: tuple
    output_shape: tuple[int, ...]
    block: int = 0

    @property
    def grid_size(self) -> int:
        return math.prod(self.grid)

    @property
    def adjoint_offset(self) -> tuple[int, ...]:
        """Offsets of the adjoint's gather: ``tail - offset`` into the grid shifted by `tail`."""
        return tuple(self.tail - o for o in self.offset)

    def columns(self, rows: int, itemsize: int) -> int:
        """GEMM: grid samples per chunk, so that `rows` shifted copies of that many
        samples of `itemsize` bytes take about `block` bytes (at least 64)."""
        return max(64, self.block // max(rows * itemsize, 1))

    def slabs(self, height: int, batch: int, rows: int, itemsize: int):
        """GEMM chunks ``(b0, b1, r0, r1)`` over a box of `height` grid rows (first axis)
        of each of `batch` items: slabs of rows ``r0:r1`` of one item, or, when a whole
        box fits in one chunk (:meth:`columns` for `rows` shifted copies), items
        ``b0:b1`` with all their rows."""
        per_chunk = max(1, self.columns(rows, itemsize) // math.prod(self.grid[1:]))
        items = max(1, per_chunk // max(height, 1))
        if items > 1:
            return [(b0, min(b0 + items, batch), 0, height) for b0 in range(0, batch, items)]
        return [(b, b + 1, r0, min(r0 + per_chunk, height))
                for b in range(batch) for r0 in range(0, height, per_chunk)]

    def phase_taps(self, phase: int) -> tuple[int, ...]:
        """Positions in `taps` of the taps that read `phase`."""
        return tuple(i for i, p in enumerate(self.phase) if p == phase)

    def channel_blocks(self, channels: int, rows_per_channel: int, row_length: int):
        """Blocks ``(c0, c1)`` of whole channels covering ``range(channels)``, each of at
        most `block` elements (``(c1 - c0) * rows_per_channel * row_length``, at least
        one channel): the depthwise engine places, runs and crops one block at a time
        in buffers of that size."""
        if not channels or not row_length:
            return []
        step = max(1, self.block // (rows_per_channel * row_length))
        return [(c0, min(c0 + step, channels)) for c0 in range(0, channels, step)]

    def __str__(self) -> str:
        grid = "x".join(map(str, self.grid))
        lines = [f"LayerPlan: engine {self.engine!r} ({self.reason})",
                 f"  {self.phases} phase(s) on a {grid} grid, {len(self.taps)} tap(s), "
                 f"tail {self.tail}, input {'extended first' if self.extend else 'placed as is'}",
                 "  tap  phase  offset"]
        lines += [f"  {t:>3}  {p:>5}  {o:>6}" for t, p, o in zip(self.taps, self.phase,
                                                              self.offset)]
        if self.block:
            lines.append(f"  blocks of {self.block} elements")
        if self.engine == "gemm":
            lines.append(f"  one matrix product over the shifted copies read by all taps "
                         f"(adjoint: by each phase's), in chunks of {self.block} bytes")
        return "\n".join(lines)


def layer_plan(geometry: Geometry, taps, engine: str, reason: str = "",
               block: int = 0) -> LayerPlan:
    """The :class:`LayerPlan` of `geometry` for the flat kernel `taps` (sizes only).

    Examples
    --------
    >>> from linconv._geometry import Geometry, Channels
    >>> g = Geometry.from_args((3, 3), (8, 8), 1, stride=2, channels=Channels(4, 4, 4))
    >>> plan = layer_plan(g, range(9), "depthwise", "one input channel per group", 4096)
    >>> plan.grid, plan.phases, plan.offset[:4], plan.tail
    ((5, 5), 4, (0, 0, 1, 0), 6)
    >>> print(plan)  # doctest: +ELLIPSIS
    LayerPlan: engine 'depthwise' (one input channel per group)
      4 phase(s) on a 5x5 grid, 9 tap(s), tail 6, input placed as is
    ...
    """
    taps = np.asarray(list(taps), dtype=np.intp)
    grid, phase, offset = polyphase(geometry)
    phase, offset = phase[taps], offset[taps]
    extend = geometry.boundary != "zero"
    return LayerPlan(
        engine=engine, reason=reason, grid=tuple(int(n) for n in grid),
        phases=math.prod(geometry.strides), taps=tuple(int(t) for t in taps),
        phase=tuple(int(p) for p in phase), offset=tuple(int(o) for o in offset),
        tail=int(offset.max()) if len(offset) else 0, extend=extend,
        placements=placements(geometry, extend), output_shape=geometry.spatial_output_shape,
        block=int(block))
