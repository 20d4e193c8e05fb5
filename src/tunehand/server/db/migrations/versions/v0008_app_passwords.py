"""Application passwords, for Subsonic apps: each one is a device of its account."""

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


def downgrade() -> None:
    op.drop_index("ix_app_passwords_lookup", table_name="app_passwords")
    op.drop_index("ix_app_passwords_account_id", table_name="app_passwords")
    op.drop_table("app_passwords")
