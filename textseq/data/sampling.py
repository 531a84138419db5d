"""One sampler: a uniform, seeded sample of a stream too long to hold (reservoir sampling).

Used for the pairs a streamed run builds its vocabulary from and for the lines SentencePiece learns
from. Memory holds the sample only; the items come back in the order they came.

>>> reservoir(iter("abcdefgh"), 3, seed=0)
(['b', 'f', 'g'], 8)
"""

from __future__ import annotations

import array
import random
from typing import Iterable, TypeVar

Item = TypeVar("Item")


def reservoir(items: Iterable[Item], count: int, seed: int) -> tuple[list[Item], int]:
    """At most `count` of `items` drawn uniformly in one pass, in their order, and how many there were;
    the same `seed` and items give the same sample."""
    rng = random.Random(seed)
    kept: list[Item] = []
    order = array.array("q")  # each kept item's position in the stream (8 bytes each, not a Python int)
    seen = 0
    for item in items:
        slot = seen if seen < count else rng.randrange(seen + 1)
        if slot < count:
            if slot == len(kept):
                kept.append(item)
                order.append(seen)
            else:
                kept[slot], order[slot] = item, seen
        seen += 1
    ranked = sorted(range(len(kept)), key=order.__getitem__)
    return [kept[i] for i in ranked], seen
