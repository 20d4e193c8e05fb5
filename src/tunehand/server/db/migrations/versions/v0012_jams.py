"""Jams: a host's session opened to other accounts, its guests, and who was kicked out.

Queue entries carry `added_by` inside the stored queue (a JSON field with a default),
so the sessions table needs no change.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    op.create_table(
        "jams",
        sa.Column(
            "host_id",
            sa.Integer(),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("guests_can_control", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("code"),
    )
    op.create_table(
        "jam_members",
        sa.Column(
            "account_id",
            sa.Integer(),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "host_id",
            sa.Integer(),
            sa.ForeignKey("jams.host_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("joined_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_jam_members_host_id", "jam_members", ["host_id"])
    op.create_table(
        "jam_kicked",
        sa.Column(
            "host_id",
            sa.Integer(),
            sa.ForeignKey("jams.host_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "account_id",
            sa.Integer(),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )


def downgrade() -> None:
    op.drop_table("jam_kicked")
    op.drop_index("ix_jam_members_host_id", table_name="jam_members")
    op.drop_table("jam_members")
    op.drop_table("jams")
