"""The built-in `dates` task: human-written dates -> ISO 8601, generated deterministically.

Dates run from 1950-01-01 to 2049-12-31 so that two-digit years have one reading (50-99 -> 19xx,
00-49 -> 20xx). The days are shuffled once by the seed and cut into test, validation and training
pools, so no date appears in two splits. Day-first and month-first numeric forms use different
separators ("03.04.98" is the 3rd of April, "4/3/1998" is April 3rd), so every source has exactly
one answer.

>>> dates_examples("test", count=2, seed=0)  # doctest: +SKIP
[('Sunday, 17 June 2035', '2035-06-17'), ('1973/11/5', '1973-11-05')]
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Callable

FIRST_DAY = dt.date(1950, 1, 1)
LAST_DAY = dt.date(2049, 12, 31)

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def ordinal(n: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th', 23 -> '23rd'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _month(d: dt.date) -> str:
    return MONTHS[d.month - 1]


def _weekday(d: dt.date) -> str:
    return WEEKDAYS[d.weekday()]


def _yy(d: dt.date) -> str:
    return f"{d.year % 100:02d}"


FORMATS: dict[str, Callable[[dt.date], str]] = {
    "ordinal of month": lambda d: f"{ordinal(d.day)} of {_month(d)} {d.year}",
    "short weekday dotted": lambda d: f"{_weekday(d)[:3]}, {d.day:02d}.{d.month:02d}.{_yy(d)}",
    "lower month day year": lambda d: f"{_month(d).lower()} {d.day} {d.year}",
    "year slash month slash day": lambda d: f"{d.year}/{d.month}/{d.day}",
    "month day comma year": lambda d: f"{_month(d)} {d.day}, {d.year}",
    "day month year": lambda d: f"{d.day} {_month(d)} {d.year}",
    "dotted day month year": lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    "us slash": lambda d: f"{d.month}/{d.day}/{d.year}",
    "us slash short year": lambda d: f"{d.month}/{d.day}/{_yy(d)}",
    "iso": lambda d: d.isoformat(),
    "compact": lambda d: f"{d.year}{d.month:02d}{d.day:02d}",
    "long weekday": lambda d: f"{_weekday(d)}, {_month(d)} {d.day}, {d.year}",
    "day short month": lambda d: f"{d.day} {_month(d)[:3]} {d.year}",
    "short month apostrophe": lambda d: f"{_month(d)[:3]} {d.day} '{_yy(d)}",
    "the ordinal of lower month": lambda d: f"the {ordinal(d.day)} of {_month(d).lower()}, {d.year}",
    "upper ordinal": lambda d: f"{_month(d).upper()} {ordinal(d.day).upper()} {d.year}",
    "dashed short month": lambda d: f"{d.day}-{_month(d)[:3].lower()}-{d.year}",
    "lower weekday day month": lambda d: f"{_weekday(d).lower()} {d.day} {_month(d).lower()} {d.year}",
    "year dotted": lambda d: f"{d.year}.{d.month:02d}.{d.day:02d}",
}

SPLITS = ("train", "validation", "test")


def split_days(seed: int, validation_days: int, test_days: int) -> dict[str, list[dt.date]]:
    """Every day in range, shuffled by `seed` and cut into disjoint test/validation/train pools."""
    total = (LAST_DAY - FIRST_DAY).days + 1
    if validation_days + test_days >= total:
        raise ValueError(f"asked for {validation_days + test_days} held-out days; only {total} exist")
    days = [FIRST_DAY + dt.timedelta(days=i) for i in range(total)]
    random.Random(seed).shuffle(days)
    return {
        "test": days[:test_days],
        "validation": days[test_days:test_days + validation_days],
        "train": days[test_days + validation_days:],
    }


def dates_examples(split: str, count: int, seed: int, validation_days: int = 1_000,
                   test_days: int = 2_000) -> list[tuple[str, str]]:
    """`count` (human date, ISO date) pairs of one split, the same for the same arguments.

    Held-out splits use each of their days once (so `count` is at most the pool size); the
    training split samples its pool with replacement, each example in a random format.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    pool = split_days(seed, validation_days, test_days)[split]
    rng = random.Random(f"{seed}-{split}")
    if split == "train":
        days = [rng.choice(pool) for _ in range(count)]
    else:
        if count > len(pool):
            raise ValueError(f"{split} has {len(pool)} distinct days; asked for {count}")
        days = pool[:count]
    formats = list(FORMATS.values())
    return [(rng.choice(formats)(day), day.isoformat()) for day in days]
