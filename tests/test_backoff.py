"""Reconnect delays: jittered, growing, capped, never ending, reproducible for a seed."""

from __future__ import annotations

import random
from itertools import islice

import pytest

from tunehand.core.backoff import FACTOR, INITIAL_S, MAX_S, backoff


def caps(n: int, initial: float = INITIAL_S, maximum: float = MAX_S) -> list[float]:
    return [min(initial * FACTOR**k, maximum) for k in range(n)]


def take(n: int, rng: random.Random, **kw: float) -> list[float]:
    return list(islice(backoff(rng, **kw), n))


@pytest.mark.parametrize("seed", range(20))
def test_each_delay_is_jittered_within_half_its_cap_and_its_cap(seed: int) -> None:
    delays = take(40, random.Random(seed))
    for delay, cap in zip(delays, caps(40), strict=True):
        assert cap / 2 <= delay <= cap


@pytest.mark.parametrize("seed", range(20))
def test_delays_grow_until_the_cap_then_stay_capped(seed: int) -> None:
    delays = take(40, random.Random(seed))
    growing = [d for d, c in zip(delays, caps(40), strict=True) if c < MAX_S]
    assert growing == sorted(growing)  # each range starts where the previous one ended
    assert delays[0] <= INITIAL_S
    assert all(MAX_S / 2 <= d <= MAX_S for d in delays[10:])
    assert max(delays) <= MAX_S


def test_the_edges_of_the_jitter_range() -> None:
    class Edge(random.Random):
        def __init__(self, at: float) -> None:
            super().__init__(0)
            self.at = at

        def uniform(self, a: float, b: float) -> float:
            return a + (b - a) * self.at

    assert take(3, Edge(0.0)) == [INITIAL_S / 2, INITIAL_S, 2 * INITIAL_S]
    assert take(3, Edge(1.0)) == [INITIAL_S, 2 * INITIAL_S, 4 * INITIAL_S]
    assert take(30, Edge(1.0))[-1] == MAX_S
    assert take(30, Edge(0.0))[-1] == MAX_S / 2


def test_a_seeded_random_gives_the_same_delays() -> None:
    assert take(25, random.Random(7)) == take(25, random.Random(7))
    assert take(25, random.Random(7)) != take(25, random.Random(8))


def test_it_never_gives_up() -> None:
    gen = backoff(random.Random(1))
    for _ in range(10_000):
        assert 0 < next(gen) <= MAX_S


def test_custom_initial_and_maximum() -> None:
    delays = take(20, random.Random(3), initial=1.0, maximum=4.0)
    for delay, cap in zip(delays, caps(20, 1.0, 4.0), strict=True):
        assert cap / 2 <= delay <= cap


def test_an_initial_delay_above_the_maximum_is_capped() -> None:
    assert all(d <= 2.0 for d in take(5, random.Random(3), initial=10.0, maximum=2.0))
