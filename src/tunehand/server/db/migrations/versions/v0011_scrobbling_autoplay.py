"""Scrobbling: the services an account sends its listens to, its current play (a listen
counted once per play), and the durable outbox of submissions; and each account's
autoplay switch."""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"


def _account(primary_key: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "account_id",
        sa.Integer(),
        sa.ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
        primary_key=primary_key,
    )


def upgrade() -> None:
    op.create_table(
        "scrobble_services",
        _account(primary_key=True),
        sa.Column("name", sa.String(length=32), primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("user_name", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "scrobble_plays",
        _account(primary_key=True),
        sa.Column("play", sa.String(length=96), nullable=False),
        sa.Column("track_id", sa.String(length=64), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("now_sent", sa.Boolean(), nullable=False),
        sa.Column("listened", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "scrobble_outbox",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _account(),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), server_default="", nullable=False),
    )
    op.create_index("ix_scrobble_outbox_account_id", "scrobble_outbox", ["account_id"])
    op.create_index("ix_scrobble_outbox_due_ms", "scrobble_outbox", ["due_ms"])
    # A plain ADD COLUMN, never a batch: on SQLite a batch rebuilds `accounts`, and
    # dropping the old table deletes every row that refers to it ON DELETE CASCADE
    # (sessions, devices, playlists...) while foreign keys are on.
    op.add_column(
        "accounts",
        sa.Column(
            "autoplay",
            sa.Boolean(create_constraint=False),
            server_default=sa.false(),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("accounts", "autoplay")  # SQLite 3.35+ drops a column in place
    op.drop_index("ix_scrobble_outbox_due_ms", table_name="scrobble_outbox")
    op.drop_index("ix_scrobble_outbox_account_id", table_name="scrobble_outbox")
    op.drop_table("scrobble_outbox")
    op.drop_table("scrobble_plays")
    op.drop_table("scrobble_services")
