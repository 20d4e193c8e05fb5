"""The account's past transfers (from which device to which, at what hour), from which
the server predicts the warm next device (`core/predict.py`). At most
`HISTORY_MAX` rows per account are kept (`db/transfers.py` drops the oldest)."""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"


def upgrade() -> None:
    op.create_table(
        "transfers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "account_id",
            sa.Integer(),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("hour", sa.Integer(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_transfers_account_id", "transfers", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_transfers_account_id", table_name="transfers")
    op.drop_table("transfers")
