"""The library's text index (`search_words`; see `db.search_index`),
built here from the tracks and albums already stored; and what the Subsonic API keeps
per account: apps' "now playing", ratings, bookmarks, and the session version each app
last saw (`play_queue_seen`, the play queue's guard across workers and instances).

Search used to scan every track's `search_key` with `LIKE`; on a 50,000-track library
that took 100–250 ms per query. The index is kept current by every scan from now on.
"""

import sqlalchemy as sa
from alembic import op

from tunehand.server.db import search_index

revision = "0013"
down_revision = "0012"

CodePointText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    words = op.create_table(
        "search_words",
        sa.Column("kind", sa.String(length=1), nullable=False),
        sa.Column("word", CodePointText, nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("sort_key", CodePointText, nullable=False),
        sa.Column("item_words", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "word", "owner"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_search_words_owner", "search_words", ["owner"])
    if op.get_bind().dialect.name == "postgresql":
        # A one-word query reads its range from the index alone: PostgreSQL's heap is
        # not kept in key order (SQLite's WITHOUT ROWID table is the key's b-tree).
        op.create_index(
            "ix_search_words_rank",
            "search_words",
            ["kind", "word"],
            postgresql_include=["owner", "points", "sort_key"],
        )
    op.create_table(
        "now_playing",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("track_id", sa.String(length=64), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "device_id"),
    )
    op.create_table(
        "ratings",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("rated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "item_id"),
    )
    op.create_table(
        "bookmarks",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.String(length=64), nullable=False),
        sa.Column("position_ms", sa.BigInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("changed_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "track_id"),
    )
    op.create_table(
        "play_queue_seen",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_id"),
    )
    op.create_index("ix_play_queue_seen_account_id", "play_queue_seen", ["account_id"])
    conn = op.get_bind()
    tracks = conn.execute(sa.text("SELECT id, title, artist, album FROM tracks")).all()
    groups = conn.execute(sa.text("SELECT id, name, artist, artist_key FROM albums")).all()
    for rows in (
        search_index.track_rows(map(tuple, tracks)),
        search_index.group_rows(map(tuple, groups)),
    ):
        if rows.words:
            op.bulk_insert(words, rows.words)


def downgrade() -> None:
    op.drop_index("ix_play_queue_seen_account_id", table_name="play_queue_seen")
    for table in ("play_queue_seen", "bookmarks", "ratings", "now_playing"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_search_words_rank", table_name="search_words")
    op.drop_index("ix_search_words_owner", table_name="search_words")
    op.drop_table("search_words")
