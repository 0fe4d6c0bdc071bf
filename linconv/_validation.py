"""Argument normalisation and error messages shared by every front door.

Every public function validates here, at construction, before any large
allocation.  Messages follow one pattern: the parameter in backticks, the rule,
and the value received.
"""

from __future__ import annotations

import numbers
import operator
import os
from collections.abc import Sequence

import numpy as np

__all__ = [
    "BOUNDARIES",
    "SPARSE_FORMATS",
    "METHODS",
    "as_kernel",
    "as_shape",
    "as_int_tuple",
    "as_padding",
    "as_boundary",
    "as_method",
    "as_format",
    "as_array",
    "check_memory",
    "available_memory",
]

#: linconv's boundary rules (numpy.pad semantics).
BOUNDARIES = ("zero", "wrap", "reflect", "symmetric", "edge")

# Other libraries' names, refused because the same word means different
# things elsewhere (ndimage "reflect" is numpy "symmetric").
_FOREIGN_BOUNDARIES = {
    "constant": "zero",  # accepted alias, see as_boundary
    "zeros": "zero",
    "fill": "zero",
    "grid-constant": "zero",
    "circular": "wrap",
    "periodic": "wrap",
    "circ": "wrap",
    "grid-wrap": "wrap",
    "mirror": "reflect",
    "symm": "symmetric",
    "grid-mirror": "symmetric",
    "half-sample symmetric": "symmetric",
    "nearest": "edge",
    "replicate": "edge",
    "border": "edge",
}

#: Scipy sparse formats accepted by ``format=``.
SPARSE_FORMATS = ("csr", "csc", "coo", "bsr", "lil", "dok", "dia")

#: Application methods of the operators.
METHODS = ("auto", "direct", "fft", "sparse")

# Kernel dtype kinds: integers, floats (float16 is computed in float32, longdouble
# exactly) and complex.
_KERNEL_KINDS = "iufc"


def _is_int(value) -> bool:
    value = _scalar(value)
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _scalar(value):
    """A 0-d array as its numpy scalar (numpy accepts both where it takes an int)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value[()]
    return value


def _index(value) -> int:
    return operator.index(_scalar(value))


def as_kernel(kernel, name: str = "kernel") -> np.ndarray:
    """Return `kernel` as a numeric ndarray with at least one dimension."""
    if hasattr(kernel, "toarray") and not isinstance(kernel, np.ndarray):
        raise TypeError(f"`{name}` must be a dense array-like; got {type(kernel).__name__}")
    try:
        array = np.asarray(kernel)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"`{name}` must be a numeric array-like with a regular shape; got "
                        f"{_short(kernel)}") from exc
    if array.dtype == object:
        raise TypeError(
            f"`{name}` must be numeric; got an object array (for symbolic kernels use "
            "linconv.symbolic)"
        )
    if array.dtype.kind == "b":
        raise TypeError(f"`{name}` must be numeric, not bool; use {name}.astype(int)")
    if array.dtype.kind not in _KERNEL_KINDS:
        raise TypeError(
            f"`{name}` must have an integer, float or complex dtype; got {array.dtype}"
        )
    if not array.dtype.isnative:  # same values, the machine's byte order (scipy.sparse needs it)
        array = array.astype(array.dtype.newbyteorder("="))
    if array.ndim == 0:
        raise ValueError(f"`{name}` must have at least one dimension; got a scalar {kernel!r}")
    if array.size == 0:
        raise ValueError(f"`{name}` must not be empty; got shape {array.shape}")
    if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` must be finite; it contains NaN or inf")
    return array


def as_array(x, name: str = "x") -> np.ndarray:
    """Return data `x` as a numeric ndarray (any layout: views are not copied here)."""
    try:
        array = np.asarray(x)
    except ValueError as exc:  # ragged nested lists
        raise TypeError(
            f"`{name}` must be a numeric array-like with a regular shape (a ragged list "
            f"cannot be an array); got {_short(x)}"
        ) from exc
    if array.dtype == object or array.dtype.kind not in "biufc":
        raise TypeError(f"`{name}` must be a numeric array; got dtype {array.dtype}")
    return array


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def as_shape(shape, name: str = "input_shape") -> tuple[int, ...]:
    """Return a shape tuple of positive ints; a bare int is a 1-D shape."""
    if _is_int(shape):
        shape = (_scalar(shape),)
    if not isinstance(shape, (Sequence, np.ndarray)) or isinstance(shape, str):
        raise TypeError(f"`{name}` must be an int or a sequence of ints; got {shape!r}")
    if not all(_is_int(s) for s in shape):
        raise TypeError(f"`{name}` must contain only integers; got {tuple(shape)!r}")
    result = tuple(_index(s) for s in shape)
    if len(result) == 0 or any(s < 1 for s in result):
        raise ValueError(f"`{name}` must be a non-empty tuple of positive sizes; got {result}")
    return result


def as_int_tuple(value, ndim: int, name: str, minimum: int = 1) -> tuple[int, ...]:
    """Return `value` (an int or one int per axis) as a tuple of length `ndim`."""
    if _is_int(value):
        value = (_scalar(value),) * ndim
    if not isinstance(value, (Sequence, np.ndarray)) or isinstance(value, str):
        raise TypeError(f"`{name}` must be an int or a sequence of {ndim} ints; got {value!r}")
    values = tuple(value)
    if len(values) != ndim:
        raise ValueError(f"`{name}` must have one entry per axis ({ndim}); got {values!r}")
    if not all(_is_int(v) for v in values):
        raise TypeError(f"`{name}` must contain only integers; got {values!r}")
    if any(v < minimum for v in values):
        rule = "positive" if minimum == 1 else f"at least {minimum}"
        which = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        bad = values[0] if len(set(values)) == 1 else values
        raise ValueError(f"`{name}` must be {which} ({rule} on every axis); got {bad!r}")
    return tuple(_index(v) for v in values)


def as_padding(padding, ndim: int, name: str = "mode") -> tuple[tuple[int, int], ...]:
    """Parse explicit padding: an int, a per-axis sequence of ints or (lo, hi) pairs.

    In 1-D a bare ``(lo, hi)`` pair is accepted too.
    """
    def pair(entry):
        if _is_int(entry):
            return (_index(entry),) * 2
        if isinstance(entry, (Sequence, np.ndarray)) and not isinstance(entry, str):
            entry = tuple(entry)
            if len(entry) == 2 and all(_is_int(e) for e in entry):
                return tuple(_index(e) for e in entry)
        raise TypeError(
            f"`{name}` entries must be an int or a (lo, hi) pair of ints; got {entry!r}"
        )

    given = padding
    padding = _scalar(padding)
    if _is_int(padding):
        pads = (pair(padding),) * ndim
    elif isinstance(padding, (Sequence, np.ndarray)) and not isinstance(padding, str):
        entries = tuple(padding)
        if ndim == 1 and len(entries) == 2 and all(_is_int(e) for e in entries):
            entries = (entries,)
        if len(entries) != ndim:
            raise ValueError(
                f"`{name}` must have one entry per axis ({ndim}); got {tuple(padding)!r}"
            )
        pads = tuple(pair(e) for e in entries)
    else:
        words = "'full', 'same', 'valid'" if name == "mode" else "'same', 'valid'"
        raise TypeError(
            f"`{name}` must be {words}, an int or a per-axis sequence; got {padding!r}"
        )
    if any(p < 0 for lo_hi in pads for p in lo_hi):
        raise ValueError(f"`{name}` must be non-negative (explicit padding); got {given!r}")
    return pads


def as_boundary(boundary) -> str:
    """Return linconv's boundary name; refuse other libraries' names."""
    if not isinstance(boundary, str):
        raise TypeError(f"`boundary` must be a string; got {boundary!r}")
    if boundary in BOUNDARIES:
        return boundary
    if boundary == "constant":
        return "zero"
    if boundary in _FOREIGN_BOUNDARIES:
        raise ValueError(
            f"`boundary` {boundary!r} is another library's name, and names differ between "
            f"libraries; linconv calls this rule {_FOREIGN_BOUNDARIES[boundary]!r} "
            f"(choose from {', '.join(BOUNDARIES)})"
        )
    raise ValueError(f"`boundary` must be one of {', '.join(BOUNDARIES)}; got {boundary!r}")


def _as_choice(value, choices, name: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def as_method(method) -> str:
    return _as_choice(method, METHODS, "method")


def as_format(format) -> str:
    return _as_choice(format, SPARSE_FORMATS, "format")


def available_memory() -> int | None:
    """Bytes of memory available to this process now, or None if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


_SMALL = 1 << 28  # 256 MiB

MATRIX_ADVICE = ("use the matrix-free linconv.ConvolutionOperator (or conv_operator; "
                 "method='fft' or 'direct') instead")


def check_memory(nbytes: int, what, advice: str = MATRIX_ADVICE) -> None:
    """Refuse an allocation of `nbytes` that exceeds the available memory.

    Raises linconv's own MemoryError (the estimate, what is available, what to
    do) before anything is allocated.  `what` is a string, or a callable that
    returns one (formatted only for the message).
    """
    if nbytes < _SMALL:  # not worth reading /proc/meminfo for
        return
    available = available_memory()
    if available is not None and nbytes > available:
        what = what() if callable(what) else what
        raise MemoryError(
            f"{what} needs about {nbytes / 2**30:.1f} GiB but only "
            f"{available / 2**30:.1f} GiB is available; {advice}"
        )


def is_dask_array(x) -> bool:
    """True for a dask array, detected without importing dask."""
    return type(x).__module__.partition(".")[0] == "dask"
