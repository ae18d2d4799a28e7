"""Counts estimated from a random sample of id blocks, each with a 95 % interval.

The id range [min_id, max_id] is cut into blocks of `width` consecutive ids; a sample is `k` of
those blocks drawn uniformly at random, without replacement, with a fresh seed on every read.
Each block is a cluster: whatever pattern the ids follow (tasks assigned round-robin, batches of
a fixed composition, run_at from a counter, completed jobs leaving gaps), every block has the
same chance to be read, so the scaled sum is an unbiased estimate of the table's count
(Horvitz-Thompson for a simple random sample of clusters), and the spread of the per-block counts
gives its variance. Gaps need no correction: a block of deleted ids simply counts zero rows.

An interval from the normal approximation is only trusted when the item was seen in enough
blocks and is tight enough to help; otherwise the estimate says what is actually known: at least
the rows seen, at most a bound derived from how many blocks could hold it unseen.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

Z95 = 1.96
# Below this many blocks holding the item, the normal interval under-covers (a few large
# clusters): the estimate becomes a range instead.
MIN_SEEN_BLOCKS = 12
# An interval wider than this share of its value does not help anyone: a range instead.
MAX_RELATIVE_ERROR = 0.5

# The draws: a fresh seed per process from the OS; tests replace it with a seeded Random.
RNG: random.Random = random.Random()


@dataclass(frozen=True)
class Estimate:
    """A count with what is known about it: value is the best guess, [low, high] the 95 %
    interval (high None: no upper bound known). method is one of
    exact, sampled (± interval), range (too uncertain for a central value), at_least (a bounded
    count reached its bound), unseen (the sample saw none: only an upper bound)."""

    value: int
    low: int
    high: int | None
    method: str

    @classmethod
    def exact_count(cls, n: int) -> Estimate:
        return cls(n, n, n, "exact")

    @property
    def exact(self) -> bool:
        return self.method == "exact"

    @property
    def relative_error(self) -> float | None:
        if self.method != "sampled" or not self.value or self.high is None:
            return None
        return max(self.high - self.value, self.value - self.low) / self.value

    @property
    def display(self) -> str:
        if self.method == "exact":
            return f"{self.value:,}"
        if self.method == "sampled":
            error = self.relative_error or 0.0
            shown = "<1" if error < 0.01 else f"{error * 100:.0f}"
            return f"~{compact(self.value)} ± {shown} %"
        if self.method == "at_least":
            return f"more than {self.low - 1:,}"
        if self.method == "unseen":
            return f"fewer than {compact((self.high or 0) + 1)}"
        high = "?" if self.high is None else compact(self.high)
        return f"between {self.low:,} and {high}"

    @property
    def explanation(self) -> str:
        interval = f"95 % interval {self.low:,} to " + (
            "unknown" if self.high is None else f"{self.high:,}"
        )
        if self.method == "exact":
            return "Exact count."
        if self.method == "sampled":
            return f"Estimated from a random sample of the table: {interval}."
        if self.method == "at_least":
            return (
                f"Counting stopped after {self.low - 1:,} rows so the page stays fast: {interval}."
            )
        if self.method == "unseen":
            return (
                "Not seen in a random sample of the table: if there are any, there are fewer "
                f"than {(self.high or 0) + 1:,} (95 %)."
            )
        return f"Too rare in the random sample for a close estimate: {interval}."

    def as_dict(self) -> dict:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "exact": self.exact,
            "method": self.method,
        }


def compact(n: int) -> str:
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (10_000, "k")):
        if n >= size:
            unit = size if size != 10_000 else 1_000
            return f"{n / unit:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{n:,}"


@dataclass(frozen=True)
class Design:
    """How a sample was drawn: `sampled` of `blocks` blocks of `width` ids each, of which the
    `edges` (the first and last block) are always read; the rest are drawn at random."""

    blocks: int
    sampled: int
    width: int
    edges: tuple[int, ...] = ()

    @property
    def fraction(self) -> float:
        return self.sampled / self.blocks if self.blocks else 1.0


@dataclass(frozen=True)
class Sums:
    """One item's counts over the randomly drawn blocks: Σy, Σy², and how many blocks had
    y > 0; and its count in the edge blocks, which are always read."""

    total: int = 0
    squares: int = 0
    blocks: int = 0
    edges: int = 0


def draw_blocks(low_id: int, high_id: int, windows: int, width: int) -> tuple[Design, list[int]]:
    """A fresh random choice of block starts covering [low_id, high_id].

    The first and the last block are always read: the last is usually partial (it ends at
    max_id) and holds the newest jobs, which often differ from the rest (just added, running);
    as random blocks they would be rare outliers that the variance estimate cannot see.
    """
    blocks = (high_id - low_id) // width + 1
    edges: tuple[int, ...] = ()
    if windows >= blocks:
        picked: list[int] = list(range(blocks))
    elif windows < 4:  # too few to spend two on the edges
        picked = RNG.sample(range(blocks), windows)
    else:
        edges = (0, blocks - 1)
        picked = [*edges, *(1 + b for b in RNG.sample(range(blocks - 2), windows - 2))]
    starts = sorted(low_id + b * width for b in picked)
    return Design(blocks=blocks, sampled=len(starts), width=width, edges=edges), starts


def poisson_upper(seen: int) -> float:
    """One-sided 95 % upper limit of a Poisson mean having observed `seen` (Wilson-Hilferty)."""
    n = seen + 1
    return n * (1 - 1 / (9 * n) + 1.645 / (3 * math.sqrt(n))) ** 3


def estimate(sums: Sums, design: Design) -> Estimate:
    """The unbiased estimate of an item's count from its sums over a sample of blocks."""
    certain = len(design.edges)
    k, blocks = design.sampled - certain, design.blocks - certain
    if k >= blocks:  # every block was read: the sample is the table
        return Estimate.exact_count(sums.total + sums.edges)
    f = k / blocks
    seen = sums.total + sums.edges  # rows actually read: a hard lower bound
    ceiling = design.width * design.blocks  # no more rows than ids
    # Rows in blocks the sample may have missed, at 95 %: each block holds at most `width`.
    possible = min(ceiling, seen + math.ceil(design.width * poisson_upper(sums.blocks) / f))
    if seen == 0:
        return Estimate(0, 0, possible, "unseen")
    value = sums.edges + sums.total / f
    mean = sums.total / k
    spread = max(0.0, (sums.squares - k * mean * mean) / (k - 1)) if k > 1 else 0.0
    half = Z95 * math.sqrt(blocks * blocks * (1 - f) * spread / k)
    # Blocks that all look alike give a spread of 0, yet an unsampled block may differ (a hole
    # in the ids, one odd job): never claim more precision than counting noise, ±1.96·√value.
    half = max(half, Z95 * math.sqrt(value))
    low = max(seen, math.floor(value - half))
    high = min(ceiling, math.ceil(value + half))
    if sums.blocks >= MIN_SEEN_BLOCKS and half <= MAX_RELATIVE_ERROR * value:
        return Estimate(round(value), low, high, "sampled")
    return Estimate(round(value), seen, max(high, possible), "range")


def bounded(found: int, bound: int, sampled: Estimate | None = None) -> Estimate:
    """A bounded count's result: exact below the bound; else "more than bound", keeping what
    the sample says of the upper end."""
    if found <= bound:
        return Estimate.exact_count(found)
    if sampled is not None and sampled.method == "sampled" and sampled.low > bound:
        return sampled
    high = sampled.high if sampled is not None else None
    value = max(bound + 1, sampled.value if sampled is not None else 0)
    return Estimate(value, bound + 1, high if high is None or high > bound else None, "at_least")


def at_least(value: Estimate, floor: int) -> Estimate:
    """The estimate, knowing at least `floor` rows exist (a bounded pass saw them)."""
    if value.exact or value.low >= floor:
        return value
    high = value.high if value.high is None else max(value.high, floor)
    method = "range" if value.method == "unseen" else value.method
    return replace(value, value=max(value.value, floor), low=floor, high=high, method=method)
