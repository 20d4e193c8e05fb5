"""Search text: normalization, query words, the stored key, matching and ranking."""

from __future__ import annotations

import pytest

from tunehand.core.search import (
    MAX_QUERY_WORDS,
    normalize,
    query_words,
    score,
    search_key,
)


def like_matches(key: str, words: list[str]) -> bool:
    """What the database does: `key LIKE '% word%'` for every word."""
    return all(f" {word}" in key for word in words)


# --- normalize --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sigur Rós", "sigur ros"),
        ("Ágætis byrjun", "agaetis byrjun"),
        ("Svefn-g-englar", "svefn g englar"),
        ("MOTÖRHEAD", "motorhead"),
        ("Øresund", "oresund"),
        ("Straße", "strasse"),
        ("Đorđe Balašević", "dorde balasevic"),
        ("Łódź", "lodz"),
        ("Œuvre", "oeuvre"),
        ("AC/DC", "ac dc"),
        ("  --Hello,   World!! ", "hello world"),
        ("snake_case_name", "snake case name"),
        ("ﬁre", "fire"),
        ("Track 02", "track 02"),
        ("坂本龍一", "坂本龍一"),
        ("Кино", "кино"),
        ("", ""),
        ("!!!", ""),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_normalize_is_idempotent() -> None:
    for text in ("Sigur Rós", "Ágætis byrjun", "AC/DC", "Łódź"):
        assert normalize(normalize(text)) == normalize(text)


# --- query_words ------------------------------------------------------------------------


def test_query_words_are_normalized_and_non_empty() -> None:
    assert query_words("  Sigur   RÓS!! ") == ["sigur", "ros"]
    assert query_words("") == []
    assert query_words(" -- / ") == []


def test_query_words_are_limited() -> None:
    q = " ".join(f"w{i}" for i in range(20))
    assert query_words(q) == [f"w{i}" for i in range(MAX_QUERY_WORDS)]
    assert MAX_QUERY_WORDS == 8


def test_query_words_never_hold_like_wildcards() -> None:
    for word in query_words("100% a_b c%d _x_"):
        assert "%" not in word and "_" not in word


# --- search_key -------------------------------------------------------------------------


def test_search_key_example() -> None:
    key = search_key("Svefn-g-englar", "Sigur Rós", "Ágætis byrjun", "Sigur Rós")
    assert key == " sigur ros agaetis byrjun svefn g englar "


def test_search_key_includes_a_different_album_artist_and_skips_empty_fields() -> None:
    key = search_key("Crossroads", "Various Guests", "Roads", "Various Artists")
    assert key == " various guests various artists roads crossroads "
    assert search_key("Only Title", "", "", "") == " only title "
    assert "  " not in search_key("T", "", "Album", "")


@pytest.mark.parametrize(
    ("q", "found"),
    [
        ("ros", True),
        ("ROS", True),
        ("rós", True),
        ("sig ros", True),
        ("agaetis", True),
        ("Ágætis", True),
        ("englar", True),
        ("svefn-g", True),
        ("gur", False),
        ("os", False),
        ("sigur blur", False),
    ],
)
def test_key_and_score_agree(q: str, found: bool) -> None:
    words = query_words(q)
    key = search_key("Svefn-g-englar", "Sigur Rós", "Ágætis byrjun", "")
    assert like_matches(key, words) is found
    assert (score(words, "Svefn-g-englar", "Sigur Rós", "Ágætis byrjun") is not None) is found


def test_album_artist_matches_in_key_and_score() -> None:
    words = query_words("various artists")
    key = search_key("Crossroads", "Various Guests", "Roads", "Various Artists")
    assert like_matches(key, words)
    assert score(words, "Crossroads", "Various Guests", "Roads") is None
    assert score(words, "Crossroads", "Various Guests", "Roads", "Various Artists") is not None


# --- score ------------------------------------------------------------------------------


def rank(q: str, tracks: list[tuple[str, str, str]]) -> list[str]:
    """Titles of the matching tracks, best first."""
    words = query_words(q)
    scored = [(score(words, *t), t[0]) for t in tracks]
    return [title for s, title in sorted((s, t) for s, t in scored if s is not None)[::-1]]


def test_empty_query_matches_everything_equally() -> None:
    assert score([], "A", "B", "C") == score([], "X", "", "") == 0


def test_exact_whole_field_beats_any_prefix_match() -> None:
    tracks = [
        ("Roads of Home", "Someone", "Album"),  # title prefix
        ("Home", "Someone", "Album"),  # exact title
        ("Other", "Home", "Album"),  # exact artist
    ]
    assert rank("home", tracks) == ["Home", "Other", "Roads of Home"]


def test_exact_album_beats_title_prefix() -> None:
    tracks = [("Abbey Road Blues", "X", "Y"), ("Come Together", "The Beatles", "Abbey Road")]
    assert rank("abbey road", tracks) == ["Come Together", "Abbey Road Blues"]


def test_title_beats_artist_beats_album() -> None:
    tracks = [
        ("Something", "Someone", "Blue Nights"),  # album word
        ("Blue Monday", "Someone", "Album"),  # title word
        ("Something Else", "Blue Öyster Cult", "Album"),  # artist word
    ]
    assert rank("blu", tracks) == ["Blue Monday", "Something Else", "Something"]


def test_more_words_in_the_title_rank_higher() -> None:
    tracks = [
        ("Red Rain", "Blue Band", "Album"),  # "red" in title, "blue" in artist
        ("Red and Blue", "Band", "Album"),  # both in title
    ]
    assert rank("red blue", tracks) == ["Red and Blue", "Red Rain"]


def test_earlier_word_position_ranks_higher() -> None:
    tracks = [
        ("The Long Night Train", "X", "Y"),
        ("Night Train", "X", "Y"),
        ("A Night Out", "X", "Y"),
    ]
    assert rank("night", tracks) == ["Night Train", "A Night Out", "The Long Night Train"]


def test_whole_word_ranks_above_prefix_at_the_same_position() -> None:
    assert rank("ros", [("Roses", "X", "Y"), ("Ros", "X", "Y")])[0] == "Ros"


def test_no_match_is_none_and_match_is_case_and_accent_insensitive() -> None:
    assert score(["gur"], "Svefn-g-englar", "Sigur Rós", "Ágætis byrjun") is None
    assert score(["ros", "blur"], "Svefn-g-englar", "Sigur Rós", "Ágætis byrjun") is None
    plain = score(query_words("sigur ros"), "Title", "Sigur Ros", "")
    fancy = score(query_words("SIGUR RÓS"), "Title", "Sigur Rós", "")
    assert plain is not None and plain == fancy
