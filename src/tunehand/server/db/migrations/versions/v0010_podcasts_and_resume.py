"""Podcasts (an account's feed subscriptions and their episodes), long-form resume
points (each account's own position in episodes, audiobooks and long tracks), and each
account's listening settings (speeds for music and long-form, the sleep timer)."""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.create_table(
        "podcasts",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column(
            "account_id",
            sa.Integer(),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("etag", sa.Text(), nullable=True),
        sa.Column("last_modified", sa.Text(), nullable=True),
        sa.Column("added_ms", sa.BigInteger(), nullable=False),
        sa.Column("refreshed_ms", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_podcasts_account_id", "podcasts", ["account_id"])
    op.create_table(
        "episodes",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column(
            "podcast_id",
            sa.String(length=64),
            sa.ForeignKey("podcasts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "account_id",
            sa.Integer(),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("published_ms", sa.BigInteger(), nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("mime", sa.String(length=128), nullable=False),
    )
    op.create_index("ix_episodes_podcast_id", "episodes", ["podcast_id"])
    op.create_index("ix_episodes_account_id", "episodes", ["account_id"])
    op.create_table(
        "resume_points",
        sa.Column(
            "account_id",
            sa.Integer(),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("track_id", sa.String(length=64), primary_key=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("position_ms", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.BigInteger(), nullable=False),
        sa.Column("played", sa.Boolean(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "listening",
        sa.Column(
            "account_id",
            sa.Integer(),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("music_speed", sa.Float(), nullable=False),
        sa.Column("long_speed", sa.Float(), nullable=False),
        sa.Column("sleep_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("sleep_entry", sa.String(length=64), nullable=True),
    )
    op.create_index("ix_listening_sleep_at_ms", "listening", ["sleep_at_ms"])


def downgrade() -> None:
    op.drop_index("ix_listening_sleep_at_ms", table_name="listening")
    op.drop_table("listening")
    op.drop_table("resume_points")
    op.drop_index("ix_episodes_account_id", table_name="episodes")
    op.drop_index("ix_episodes_podcast_id", table_name="episodes")
    op.drop_table("episodes")
    op.drop_index("ix_podcasts_account_id", table_name="podcasts")
    op.drop_table("podcasts")
