"""Plans: sizes in, a frozen recipe out.

A plan says *how* one engine runs the linear map a :class:`~linconv._geometry.Geometry`
describes.  It is computed from the geometry (and the list of kernel taps that
are not all zero) alone, holds every number the engine needs, and is frozen
and printable, so the engine has no index arithmetic of its own and a plan can
be checked without arrays (as opt_einsum's ``contract_path``).

:class:`LayerPlan` serves the two spatial-domain layer engines, which share
one stride-free (polyphase) form of the correlation:

- the padded input is split into ``prod(strides)`` phases laid out on a grid of
  ``ceil(padded / stride)`` samples per axis, flattened in C order per row
  (a row is one channel of one batch item, or for the GEMM a channel over the
  whole batch);
- tap ``t`` reads phase ``phase[t]`` at the constant flat offset ``offset[t]``,
  so every output on the grid is ``sum_t w_t * phase[t][q + offset[t]]``; the
  grid positions past the output shape are computed and dropped (their reads
  stay inside the grid plus ``tail`` samples of zeros);
- the adjoint runs the same numbers in reverse: the output is placed on the
  grid (``S^T``), each phase gathers ``conj(w_t) * y[q + tail - offset[t]]`` from
  the grid shifted by ``tail`` (the full correlation ``C^H``), and the phases go
  back onto the input through the same placements (``P^T``).

Engines: ``"gemm"`` mixes channels with matrix products: per phase of the
result and chunk of the grid, the taps' shifted copies of the channels are
stacked (im2col on a cache-sized chunk) and multiplied by the weights of all
those taps at once;
``"depthwise"`` (one input channel per group) runs batched single-channel
correlation as one multiply-add pass per tap (BLAS ``axpy``) on cache-sized
blocks of channels, placed, run and cropped one block at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._geometry import Geometry

__all__ = ["LayerPlan", "layer_plan", "placements"]


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
    grid, phase, offset = geometry.polyphase()
    phase, offset = phase[taps], offset[taps]
    extend = geometry.boundary != "zero"
    return LayerPlan(
        engine=engine, reason=reason, grid=tuple(int(n) for n in grid),
        phases=math.prod(geometry.strides), taps=tuple(int(t) for t in taps),
        phase=tuple(int(p) for p in phase), offset=tuple(int(o) for o in offset),
        tail=int(offset.max()) if len(offset) else 0, extend=extend,
        placements=placements(geometry, extend), output_shape=geometry.spatial_output_shape,
        block=int(block))
