"""Latency figures the benchmarks share: time a call over inputs, and summarize the milliseconds.

>>> times = timed(lambda text: text.upper(), ["a", "b", "c"], warm_up=1)
>>> sorted(spread(times))
['calls', 'median_ms', 'p99_ms']
>>> sorted(timed_together({"upper": str.upper, "lower": str.lower}, ["a", "b"], warm_up=1))
['lower', 'upper']
>>> sorted(timed_apart({"text": {"upper": str.upper}, "bytes": {"len": len}}, ["a", "b", "c"], warm_up=1, run=2))
['len', 'upper']
>>> spread([1.0, 2.0, 3.0, 4.0])["p99_ms"]
3.0
"""

from __future__ import annotations

import statistics
import time


def timed(call, inputs, warm_up: int = 5) -> list[float]:
    """Milliseconds of `call(x)` for each `x` of `inputs`, after calling it on the first `warm_up`
    of them (tracing, caches and the interpreter's first allocations are not what a user waits on)."""
    return timed_together({"call": call}, inputs, warm_up)["call"]


def timed_together(calls: dict, inputs, warm_up: int = 5) -> dict[str, list[float]]:
    """`timed` for several calls over the same inputs (`timed` is the case of one): each input goes
    to every call in turn, the order rotating from one input to the next, so that a slow phase of a
    shared machine falls on all of them alike (timed one after the other, their ratios swing with
    the machine)."""
    inputs, names = list(inputs), list(calls)
    for x in inputs[:warm_up]:
        for name in names:
            calls[name](x)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i, x in enumerate(inputs):
        for name in names[i % len(names):] + names[:i % len(names)]:
            started = time.perf_counter()
            calls[name](x)
            times[name].append((time.perf_counter() - started) * 1000)
    return times


def timed_apart(groups: dict[str, dict], inputs, warm_up: int = 5, run: int = 20) -> dict[str, list[float]]:
    """`timed_together` for callers that would live in different processes (`groups`: a name for
    each, and its calls): each group takes `run` inputs in a row before the next takes the same ones,
    the order of the groups rotating, so that one model's weights do not push another's out of the
    CPU's caches between its calls (a server holds one model) while a slow phase of the machine
    still falls on all of them alike."""
    inputs, names = list(inputs), list(groups)
    for name in names:
        timed_together(groups[name], inputs[:warm_up], warm_up=0)
    times: dict[str, list[float]] = {}
    for i, start in enumerate(range(0, len(inputs), run)):
        for name in names[i % len(names):] + names[:i % len(names)]:
            for call, values in timed_together(groups[name], inputs[start:start + run], warm_up=0).items():
                times.setdefault(call, []).extend(values)
    return times


def spread(times: list[float], digits: int = 2) -> dict:
    """The number of calls, the median and the 99th percentile (the value at rank 0.99 * (n - 1),
    rounded down: one of the measured times, not an interpolation) in milliseconds."""
    ordered = sorted(times)
    return {"calls": len(ordered), "median_ms": round(statistics.median(ordered), digits),
            "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], digits)}
