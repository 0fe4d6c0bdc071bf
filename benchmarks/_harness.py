"""Tiny timing harness: medians of repeated runs and a plain-text table."""

from __future__ import annotations

import statistics
import time


def timeit(func, repeat: int = 5, warmup: int = 1) -> tuple[float, float]:
    """(first-call seconds, median seconds of `repeat` calls after `warmup` calls)."""
    start = time.perf_counter()
    func()
    first = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        func()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def print_table(headers, rows) -> None:
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = lambda row: "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"
    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))


def race(funcs: dict, repeat: int = 7, clock=time.perf_counter, settle: float = 0.05) -> dict:
    """Median seconds per function, run round-robin so machine-load drift hits all alike.

    `clock`: wall time by default; ``time.thread_time`` gives this thread's CPU
    time, steadier on a shared, overloaded machine (for one-thread runs).

    `settle`: before each timed call, the same function runs untimed for at least
    this many seconds (at least once).  The thread pools of BLAS and of torch's
    OpenMP keep spinning for 10-30 ms after a call returns, so a call timed right
    after another library's call competes with its idle threads for the cores:
    measured on 2 cores, a linconv layer took 13 ms after a torch call against 8 ms
    alone, the torch call 19 ms after linconv against 6 ms alone, and 3.9 ms of
    BLAS calls took 7.9 ms when they began 3 ms after a torch call.  Settling times
    each function as it runs in a program that uses it alone.  0 turns it off, for
    calls that take seconds.
    """
    for func in funcs.values():  # warm-up
        func()
    times = {name: [] for name in funcs}
    for _ in range(repeat):
        for name, func in funcs.items():
            if settle:
                start = time.perf_counter()
                func()
                while time.perf_counter() - start < settle:
                    func()
            start = clock()
            func()
            times[name].append(clock() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def cpu_race(funcs: dict, repeat: int = 7) -> dict:
    """:func:`race` in CPU seconds of this thread."""
    return race(funcs, repeat, clock=time.thread_time)
