"""The clock-offset estimator (`tunehand.core.timesync`): samples, the best-sample
choice, outliers, and the bound on the error for any true offset and delays.

An exchange is simulated exactly: the client sends at local `t0`, the request takes
`up` ms, the server answers `hold` ms later and the reply takes `down` ms. With
server = local + `offset`, that gives t1 = t0 + up + offset, t2 = t1 + hold and
t3 = t2 - offset + down.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunehand.core.timesync import BEST, KEEP, Sample, TimeSync, sample


def exchange(
    offset: float, up: float, down: float, t0: float = 5_000.0, hold: float = 0.5
) -> Sample:
    t1 = t0 + up + offset
    t2 = t1 + hold
    t3 = t2 - offset + down
    return sample(t0, t1, t2, t3)


# --- one sample ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t0", "t1", "t2", "t3", "offset", "delay"),
    [
        # server 1000 ms ahead, 10 ms each way, 2 ms in the server
        (100.0, 1_110.0, 1_112.0, 122.0, 1_000.0, 20.0),
        # server behind, asymmetric (30 up, 10 down): off by (30 - 10) / 2
        (500.0, 230.0, 231.0, 241.0 + 300.0, -300.0 + 10.0, 40.0),
        # no delay at all
        (0.0, 42.0, 42.0, 0.0, 42.0, 0.0),
        # the server says it held the request longer than the round trip took
        # (clocks of slightly different rates): the delay is never negative
        (0.0, 10.0, 30.0, 5.0, 17.5, 0.0),
    ],
)
def test_sample_offset_and_delay(
    t0: float, t1: float, t2: float, t3: float, offset: float, delay: float
) -> None:
    s = sample(t0, t1, t2, t3)
    assert s == Sample(offset, delay)


def test_server_processing_time_is_not_round_trip() -> None:
    quick = exchange(offset=250.0, up=4.0, down=4.0, hold=0.0)
    slow = exchange(offset=250.0, up=4.0, down=4.0, hold=900.0)
    assert quick == slow == Sample(250.0, 8.0)


# --- the estimator ------------------------------------------------------------------------


def test_no_samples_means_no_correction() -> None:
    sync = TimeSync()
    assert not sync.ready
    assert (sync.offset_ms, sync.rtt_ms) == (0.0, 0.0)
    assert sync.server_ms(1234.9) == 1234
    assert sync.local_ms(1234) == 1234


def test_one_sample_is_the_estimate() -> None:
    sync = TimeSync()
    sync.add(exchange(offset=-7_000.0, up=6.0, down=6.0))
    assert sync.ready
    assert (sync.offset_ms, sync.rtt_ms) == (-7_000.0, 12.0)
    assert sync.server_ms(10_000.0) == 3_000
    assert sync.local_ms(3_000) == 10_000.0


def test_the_lowest_delay_samples_win_over_later_and_earlier_ones() -> None:
    sync = TimeSync()
    # Queued exchanges: long and lopsided, each off by up to 200 ms.
    for up in (400.0, 20.0, 300.0, 10.0, 500.0, 250.0):
        sync.add(exchange(offset=1_000.0, up=up, down=2.0))
    for _ in range(BEST):
        sync.add(exchange(offset=1_000.0, up=1.0, down=1.0))
    for up in (900.0, 700.0):
        sync.add(exchange(offset=1_000.0, up=up, down=1.0))
    assert sync.offset_ms == 1_000.0
    assert sync.rtt_ms == 2.0


def test_outliers_among_the_best_do_not_move_the_estimate() -> None:
    """The median of the best samples: one wild offset with a low delay (a clock step)
    among them is outvoted either way."""
    for wild in (+60_000.0, -60_000.0):
        sync = TimeSync()
        for up in (3.0, 2.0, 4.0):
            sync.add(exchange(offset=500.0, up=up, down=up))
        sync.add(Sample(500.0 + wild, 1.0))
        for _ in range(5):
            sync.add(Sample(-99_999.0, 2_000.0))  # slow and wrong
        assert sync.offset_ms == 500.0


def test_only_the_last_samples_are_kept() -> None:
    """A clock that stepped is followed once the old samples age out."""
    sync = TimeSync()
    for _ in range(KEEP):
        sync.add(exchange(offset=0.0, up=1.0, down=1.0))
    for i in range(KEEP):
        sync.add(exchange(offset=3_000.0, up=2.0, down=2.0))
        assert len(sync.samples) == KEEP
        if i < KEEP - BEST // 2 - 1:
            assert sync.offset_ms == 0.0  # the older, quicker samples still rule
    assert sync.offset_ms == 3_000.0
    assert sync.rtt_ms == 4.0


def test_rtt_is_the_lowest_delay_kept() -> None:
    sync = TimeSync()
    for d in (30.0, 8.0, 50.0):
        sync.add(Sample(0.0, d))
    assert sync.rtt_ms == 8.0


# --- properties ---------------------------------------------------------------------------

OFFSETS = st.floats(-1e9, 1e9, allow_nan=False)
DELAYS = st.floats(0.0, 5_000.0, allow_nan=False)
# A float sum of ~1e9-sized numbers is exact to about 1e-6 ms; allow a little more.
EPS = 1e-3


@settings(max_examples=300, deadline=None, database=None)
@given(offset=OFFSETS, delays=st.lists(DELAYS, min_size=1, max_size=3 * KEEP), t0=DELAYS)
def test_symmetric_delays_give_the_true_offset(
    offset: float, delays: list[float], t0: float
) -> None:
    sync = TimeSync()
    for i, d in enumerate(delays):
        sync.add(exchange(offset, d, d, t0=t0 + 10_000.0 * i))
    assert abs(sync.offset_ms - offset) <= EPS
    assert abs(sync.offset_ms - offset) <= sync.rtt_ms / 2 + EPS
    assert sync.rtt_ms == pytest.approx(2 * min(delays[-KEEP:]), abs=EPS)


@settings(max_examples=300, deadline=None, database=None)
@given(
    offset=OFFSETS,
    legs=st.lists(st.tuples(DELAYS, DELAYS), min_size=1, max_size=3 * KEEP),
)
def test_asymmetric_delays_are_off_by_at_most_half_the_delay_of_the_best(
    offset: float, legs: list[tuple[float, float]]
) -> None:
    """Each sample is off by (up - down) / 2, so by at most half its own delay; the
    estimate is one of the BEST quickest kept samples, so it is off by at most half of
    the BEST-th lowest delay."""
    sync = TimeSync()
    for i, (up, down) in enumerate(legs):
        s = exchange(offset, up, down, t0=10_000.0 * i)
        assert abs(s.offset_ms - offset) <= s.delay_ms / 2 + EPS
        sync.add(s)
    kept = sorted(up + down for up, down in legs[-KEEP:])
    bound = kept[min(BEST, len(kept)) - 1] / 2
    assert abs(sync.offset_ms - offset) <= bound + EPS
    assert sync.rtt_ms == pytest.approx(kept[0], abs=EPS)


@settings(max_examples=200, deadline=None, database=None)
@given(
    offset=OFFSETS,
    good=st.lists(st.floats(0.0, 4.9), min_size=BEST, max_size=BEST),
    bad=st.lists(
        st.tuples(st.floats(-1e9, 1e9, allow_nan=False), st.floats(10.0, 1e5)),
        max_size=KEEP - BEST,
    ),
    order=st.randoms(use_true_random=False),
)
def test_any_number_of_slow_outliers_is_ignored(
    offset: float,
    good: list[float],
    bad: list[tuple[float, float]],
    order: random.Random,
) -> None:
    samples = [exchange(offset, d, d) for d in good] + [Sample(o, d) for o, d in bad]
    order.shuffle(samples)
    sync = TimeSync()
    for s in samples:
        sync.add(s)
    assert abs(sync.offset_ms - offset) <= EPS


@settings(max_examples=200, deadline=None, database=None)
@given(offset=OFFSETS, local=st.floats(0.0, 1e9, allow_nan=False))
def test_server_and_local_time_are_inverse(offset: float, local: float) -> None:
    sync = TimeSync()
    sync.add(Sample(offset, 1.0))
    assert abs(sync.local_ms(sync.server_ms(local)) - local) <= 1.0 + EPS
