"""The database schema (SQLAlchemy Core), the same for SQLite and PostgreSQL.

Every account-owned row carries `account_id`, and every query on it filters by it.
Migrations in `migrations/versions` create exactly these tables.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()


def _owner() -> sa.Column[int]:
    """`account_id`, indexed: the account a row belongs to, gone with it (ON DELETE
    CASCADE). A new column each call: a column belongs to one table."""
    return sa.Column(
        "account_id",
        sa.Integer,
        sa.ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )


accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    # When the queue runs out, the server appends tracks that fit (`ctl autoplay on`).
    sa.Column("autoplay", sa.Boolean, nullable=False, server_default=sa.false()),
)

account_ids = sa.Table(
    "account_ids",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sqlite_autoincrement=True,
)
"""On SQLite, where account ids come from (AUTOINCREMENT: a removed account's id is
never given again). One row at most is kept. PostgreSQL's sequence never goes back."""

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    _owner(),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("last_seen_ms", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("address", sa.String(64), nullable=False, server_default=""),
    sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("kind", sa.String(16), nullable=False, server_default="terminal"),
    # The name the device last asked for (None: nothing yet), and whether it was a
    # default made unique by the server (`HOST-2`): see `accounts.upsert_device`.
    sa.Column("asked_name", sa.String(128), nullable=True),
    sa.Column("asked_default", sa.Boolean, nullable=False, server_default=sa.false()),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),  # "access" | "refresh"
    _owner(),
    sa.Column("device_id", sa.String(64), nullable=False, index=True),
    sa.Column("family", sa.String(64), nullable=False, index=True),
    sa.Column("expires_ms", sa.BigInteger, nullable=False),
    sa.Column("used_ms", sa.BigInteger, nullable=True),
    sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
)

jams = sa.Table(
    "jams",
    metadata,
    sa.Column(
        "host_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("code", sa.String(16), nullable=False, unique=True),  # 8 letters, no dash
    sa.Column("guests_can_control", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)
"""A host's session opened to other accounts (`tunehand.server.jam`)."""

jam_members = sa.Table(
    "jam_members",
    metadata,
    sa.Column(
        "account_id",
        sa.Integer,
        sa.ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
    ),  # an account is a guest of one jam at most
    sa.Column(
        "host_id",
        sa.Integer,
        sa.ForeignKey("jams.host_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("joined_ms", sa.BigInteger, nullable=False),
)

jam_kicked = sa.Table(
    "jam_kicked",
    metadata,
    sa.Column(
        "host_id", sa.Integer, sa.ForeignKey("jams.host_id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    ),
)
"""Who the host removed from its jam: they cannot join it again with its code."""

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column(
        "account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # the session without its queue and order
    sa.Column("queue", sa.Text, nullable=True),  # the queue and order (`sessions.StoredQueue`)
)

command_results = sa.Table(
    "command_results",
    metadata,
    sa.Column(
        "account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("command_id", sa.String(64), primary_key=True),
    sa.Column("code", sa.String(32), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False, index=True),
)

tracks = sa.Table(
    "tracks",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("artist", sa.Text, nullable=False),
    sa.Column("album", sa.Text, nullable=False),
    sa.Column("album_artist", sa.Text, nullable=False),
    sa.Column("album_id", sa.String(64), nullable=False, index=True),
    sa.Column("track_no", sa.Integer, nullable=True),
    sa.Column("disc_no", sa.Integer, nullable=True),
    sa.Column("year", sa.Integer, nullable=True),
    sa.Column("genre", sa.Text, nullable=False),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("replaygain_track_gain", sa.Float, nullable=True),
    sa.Column("replaygain_album_gain", sa.Float, nullable=True),
    sa.Column("mime", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mtime_ns", sa.BigInteger, nullable=False),
    sa.Column("search_key", sa.Text, nullable=False),
    sa.Column("artist_key", sa.Text, nullable=False, index=True),
    sa.Column("art_id", sa.String(64), nullable=True, index=True),  # content hash of the picture
    sa.Column("art_file", sa.Text, nullable=True),  # the picture file; NULL: embedded
)

remote_tracks = sa.Table(
    "remote_tracks",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    _owner(),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
)

playlists = sa.Table(
    "playlists",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("track_ids", sa.Text, nullable=False),  # JSON list
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("account_id", "name"),
)

likes = sa.Table(
    "likes",
    metadata,
    sa.Column(
        "account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("track_id", sa.String(64), primary_key=True),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)

history = sa.Table(
    "history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    _owner(),
    sa.Column("track_id", sa.String(64), nullable=False),
    sa.Column("played_ms", sa.BigInteger, nullable=False),
    sa.Column("device_id", sa.String(64), nullable=False),
)

login_attempts = sa.Table(
    "login_attempts",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_ms", sa.BigInteger, nullable=False),
)

device_codes = sa.Table(
    "device_codes",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),  # SHA-256 of the device code
    sa.Column("user_code", sa.String(16), nullable=False, unique=True),
    sa.Column("device_id", sa.String(64), nullable=False),
    sa.Column("device_name", sa.String(128), nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_ms", sa.BigInteger, nullable=False, index=True),
    sa.Column("interval_s", sa.Integer, nullable=False),
    sa.Column("last_poll_ms", sa.BigInteger, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # pending|approved|denied|used
    sa.Column("account_id", sa.Integer, nullable=True),  # the approving account
    sa.Column("address", sa.String(64), nullable=False, server_default=""),  # who asked
    # The device's name is a default, made unique at approval (`accounts.upsert_device`).
    sa.Column("name_default", sa.Boolean, nullable=False, server_default=sa.false()),
)

app_passwords = sa.Table(
    "app_passwords",
    metadata,
    sa.Column("device_id", sa.String(64), primary_key=True),  # its row in `devices`
    _owner(),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("secret", sa.Text, nullable=False),  # AES-GCM under a subkey of the server's
    sa.Column("lookup", sa.String(64), nullable=False, unique=True, index=True),  # keyed hash
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("account_id", "name"),
)
"""Application passwords (Subsonic apps). The secret is kept encrypted, not hashed: the
Subsonic token scheme needs md5(password + salt) on the server. `lookup` is an HMAC of
it, to find the row of a password (`p=`, `apiKey=`) without trying every one."""

albums = sa.Table(
    "albums",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, index=True),
    sa.Column("artist", sa.Text, nullable=False),
    sa.Column("artist_key", sa.Text, nullable=False, index=True),
    sa.Column("year", sa.Integer, nullable=True),
    sa.Column("genre", sa.Text, nullable=False),
    sa.Column("songs", sa.Integer, nullable=False),
    sa.Column("duration_ms", sa.BigInteger, nullable=False),
    sa.Column("art_id", sa.String(64), nullable=True),
    sa.Column("mtime_ns", sa.BigInteger, nullable=False, index=True),
)
"""Each album of the library with its totals, derived from `tracks` at the end of every
scan (`library.refresh_albums`), so album lists (Subsonic `getAlbumList2`) sort a few
thousand rows, not group every track per request."""

# Text compared by code point on every backend: the search index's prefix ranges
# (`word >= w AND word < prefix_end(w)`) and sort keys need it; SQLite compares so already.
CodePointText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")

search_words = sa.Table(
    "search_words",
    metadata,
    sa.Column("kind", sa.String(1), primary_key=True),
    sa.Column("word", CodePointText, primary_key=True),
    sa.Column("owner", sa.Text, primary_key=True),
    sa.Column("points", sa.Integer, nullable=False),
    sa.Column("sort_key", CodePointText, nullable=False),
    sa.Column("item_words", sa.Text, nullable=False),  # " w1:p1 w2:p2 ... ": all its words
    sa.Index("ix_search_words_owner", "owner"),
    # On PostgreSQL only, migrations 0013 and 0015 add ix_search_words_rank: (kind, word)
    # INCLUDE (owner, points, sort_key, item_words), so a query of one word or several is
    # an index-only scan.
    sqlite_with_rowid=False,
)
"""The text index of the library (see `search_index`): per item (`owner`: a track id, an
album id or an artist key) each normalized word with its ranking points (kinds `t`, `l`,
`r`), and each whole normalized field with its exact-match bonus (kinds `T`, `L`, `R`);
with the item's sort key and all its words and points, so a query is one index range
(ordered for one word; for several, filtered by `LIKE` on the other words and ranked
from `item_words`)."""

now_playing = sa.Table(
    "now_playing",
    metadata,
    sa.Column(
        "account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("track_id", sa.String(64), nullable=False),
    sa.Column("started_ms", sa.BigInteger, nullable=False),
)
"""What a Subsonic app said it plays (`scrobble` with `submission=false`), one row per
app; shown by `getNowPlaying` until the track would have ended."""

ratings = sa.Table(
    "ratings",
    metadata,
    sa.Column(
        "account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("item_id", sa.Text, primary_key=True),  # a track's, album's or artist's id
    sa.Column("rating", sa.Integer, nullable=False),  # 1 to 5
    sa.Column("rated_ms", sa.BigInteger, nullable=False),
)

bookmarks = sa.Table(
    "bookmarks",
    metadata,
    sa.Column(
        "account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("track_id", sa.String(64), primary_key=True),
    sa.Column("position_ms", sa.BigInteger, nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("changed_ms", sa.BigInteger, nullable=False),
)

play_queue_seen = sa.Table(
    "play_queue_seen",
    metadata,
    sa.Column("device_id", sa.String(64), primary_key=True),
    _owner(),
    sa.Column("version", sa.BigInteger, nullable=False),
)
"""The session version a Subsonic app last read (`getPlayQueue`) or wrote
(`savePlayQueue`): its `if_version` for the next save, the same on every worker and
instance."""

podcasts = sa.Table(
    "podcasts",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # "p" + a hash of account and URL
    _owner(),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("etag", sa.Text, nullable=True),
    sa.Column("last_modified", sa.Text, nullable=True),
    sa.Column("added_ms", sa.BigInteger, nullable=False),
    sa.Column("refreshed_ms", sa.BigInteger, nullable=False),
    sa.Column("error", sa.Text, nullable=True),  # the last refresh's failure, if it failed
)

episodes = sa.Table(
    "episodes",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # "e" + a hash of podcast and guid
    sa.Column(
        "podcast_id",
        sa.String(64),
        sa.ForeignKey("podcasts.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    _owner(),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("published_ms", sa.BigInteger, nullable=True),
    sa.Column("duration_ms", sa.BigInteger, nullable=False),
    sa.Column("url", sa.Text, nullable=False),  # the enclosure
    sa.Column("mime", sa.String(128), nullable=False),
)

resume_points = sa.Table(
    "resume_points",
    metadata,
    sa.Column(
        "account_id",
        sa.Integer,
        sa.ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("track_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # episode | audiobook | long
    sa.Column("position_ms", sa.BigInteger, nullable=False),
    sa.Column("duration_ms", sa.BigInteger, nullable=False),
    sa.Column("played", sa.Boolean, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)

listening = sa.Table(
    "listening",
    metadata,
    sa.Column(
        "account_id",
        sa.Integer,
        sa.ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("music_speed", sa.Float, nullable=False),
    sa.Column("long_speed", sa.Float, nullable=False),
    sa.Column("sleep_at_ms", sa.BigInteger, nullable=True, index=True),  # pause then
    sa.Column("sleep_entry", sa.String(64), nullable=True),  # or: pause when this one ends
)

scrobble_services = sa.Table(
    "scrobble_services",
    metadata,
    sa.Column(
        "account_id",
        sa.Integer,
        sa.ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("name", sa.String(32), primary_key=True),  # listenbrainz | lastfm
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("user_name", sa.Text, nullable=False),
    sa.Column("secret", sa.Text, nullable=False),  # AES-GCM, like app passwords
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)
"""Where an account's listens go. The token (ListenBrainz) or session key (Last.fm) is
kept encrypted under a subkey of the server's secret, with the account and service as
associated data."""

scrobble_plays = sa.Table(
    "scrobble_plays",
    metadata,
    sa.Column(
        "account_id",
        sa.Integer,
        sa.ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("play", sa.String(96), nullable=False),  # the entry id and its start
    sa.Column("track_id", sa.String(64), nullable=False),
    sa.Column("started_ms", sa.BigInteger, nullable=False),
    sa.Column("now_sent", sa.Boolean, nullable=False),
    sa.Column("listened", sa.Boolean, nullable=False),
)
"""The account's current play, so a listen is counted once whatever device played it."""

scrobble_outbox = sa.Table(
    "scrobble_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    _owner(),
    sa.Column("service", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # now | listen
    sa.Column("payload", sa.Text, nullable=False),  # JSON: the track and when
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("due_ms", sa.BigInteger, nullable=False, index=True),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("last_error", sa.Text, nullable=False, server_default=""),
)
"""Submissions waiting to be sent (retried with backoff while a service is down)."""

transfers = sa.Table(
    "transfers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    _owner(),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("hour", sa.Integer, nullable=False),  # of the day, UTC
    sa.Column("at_ms", sa.BigInteger, nullable=False),
)
"""The account's completed transfers (the last `core.predict.HISTORY_MAX`)."""
