"""Application passwords, for Subsonic apps: each one is a device of its account; and
the albums with their totals (derived from the tracks, refreshed by every scan)."""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "app_passwords",
        sa.Column("device_id", sa.String(length=64), primary_key=True),
        sa.Column(
            "account_id",
            sa.Integer(),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("lookup", sa.String(length=64), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("account_id", "name"),
    )
    op.create_index("ix_app_passwords_account_id", "app_passwords", ["account_id"])
    op.create_index("ix_app_passwords_lookup", "app_passwords", ["lookup"], unique=True)
    op.create_table(
        "albums",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("artist", sa.Text(), nullable=False),
        sa.Column("artist_key", sa.Text(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=True),
        sa.Column("genre", sa.Text(), nullable=False),
        sa.Column("songs", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.BigInteger(), nullable=False),
        sa.Column("art_id", sa.String(length=64), nullable=True),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_albums_name", "albums", ["name"])
    op.create_index("ix_albums_artist_key", "albums", ["artist_key"])
    op.create_index("ix_albums_mtime_ns", "albums", ["mtime_ns"])
    op.execute(
        "INSERT INTO albums (id, name, artist, artist_key, year, genre, songs, duration_ms,"
        " art_id, mtime_ns) SELECT album_id, min(album), min(album_artist), min(artist_key),"
        " max(year), min(genre), count(*), sum(duration_ms), max(art_id), max(mtime_ns)"
        " FROM tracks GROUP BY album_id"
    )


def downgrade() -> None:
    op.drop_table("albums")
    op.drop_index("ix_app_passwords_lookup", table_name="app_passwords")
    op.drop_index("ix_app_passwords_account_id", table_name="app_passwords")
    op.drop_table("app_passwords")
