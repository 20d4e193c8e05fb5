"""The warm next device's prediction (`tunehand.core.predict`), without I/O."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tunehand.core.predict import MIN_COUNT, PastTransfer, next_device


def t(source: str, target: str, hour: int = 20, at_ms: int = 0) -> PastTransfer:
    return PastTransfer(source, target, hour, at_ms)


def test_no_history_no_guess() -> None:
    assert next_device([], "r1", 20) is None


def test_one_transfer_does_not_warm_a_device() -> None:
    assert MIN_COUNT == 2
    assert next_device([t("r1", "r2")], "r1", 20) is None
    assert next_device([t("r1", "r2"), t("r1", "r2", at_ms=1)], "r1", 20) == "r2"


def test_only_transfers_away_from_the_active_device_count() -> None:
    past = [t("r3", "r2"), t("r3", "r2"), t("r2", "r1"), t("r2", "r1")]
    assert next_device(past, "r1", 20) is None
    assert next_device(past, "r3", 20) == "r2"
    assert next_device(past, "r2", 20) == "r1"


def test_the_most_frequent_target_wins() -> None:
    past = [t("r1", "r2", at_ms=1), t("r1", "r2", at_ms=2), t("r1", "r3", at_ms=3)]
    past += [t("r1", "r3", at_ms=4), t("r1", "r3", at_ms=5)]
    assert next_device(past, "r1", 20) == "r3"


def test_a_tie_goes_to_the_most_recent() -> None:
    past = [t("r1", "r2", at_ms=1), t("r1", "r3", at_ms=2), t("r1", "r3", at_ms=3)]
    past += [t("r1", "r2", at_ms=9)]
    assert next_device(past, "r1", 20) == "r2"
    assert next_device([*past, t("r1", "r3", at_ms=10), t("r1", "r2", at_ms=8)], "r1", 20) == ("r3")


def test_the_hour_of_day_decides_before_the_whole_day() -> None:
    # Mornings to the kitchen, evenings to the living room (more of those overall).
    past = [t("phone", "kitchen", 7, i) for i in range(3)]
    past += [t("phone", "living", 21, 10 + i) for i in range(5)]
    assert next_device(past, "phone", 7) == "kitchen"
    assert next_device(past, "phone", 8) == "kitchen"  # one hour either side
    assert next_device(past, "phone", 21) == "living"
    assert next_device(past, "phone", 14) == "living"  # no habit then: the whole day


def test_hours_wrap_around_midnight() -> None:
    past = [t("r1", "night", 23, 1), t("r1", "night", 0, 2)]
    past += [t("r1", "day", 12, i) for i in range(3, 8)]
    assert next_device(past, "r1", 0) == "night"
    assert next_device(past, "r1", 23) == "night"


def test_a_sparse_hour_falls_back_to_the_whole_day() -> None:
    past = [t("r1", "r3", 7, 1)] + [t("r1", "r2", 20, i) for i in range(2, 5)]
    assert next_device(past, "r1", 7) == "r2"


@given(
    st.lists(
        st.builds(
            PastTransfer,
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["a", "b", "c", "d"]),
            st.integers(0, 23),
            st.integers(0, 10**9),
        ),
        max_size=40,
    ),
    st.sampled_from(["a", "b", "c"]),
    st.integers(0, 23),
)
def test_a_guess_is_a_seen_target_away_from_the_active_device(
    past: list[PastTransfer], active: str, hour: int
) -> None:
    guess = next_device(past, active, hour)
    if guess is not None:
        assert guess != active
        seen = [p for p in past if p.source == active and p.target == guess]
        assert len(seen) >= MIN_COUNT
    assert next_device(list(reversed(past)), active, hour) == guess  # order does not matter
