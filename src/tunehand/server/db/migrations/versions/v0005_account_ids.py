"""Account ids are never reused: an `account_ids` table hands them out.

SQLite gives a deleted account's id (the largest) to the next account unless the table
is AUTOINCREMENT, and the accounts table cannot be rebuilt as one here: the rebuild drops
it, which with foreign keys on deletes every child row. So ids come from a table of
their own made AUTOINCREMENT (its sqlite_sequence never goes back); it starts at the
largest id in use. PostgreSQL's sequence never goes back either: the table stays empty.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "account_ids",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute("INSERT INTO account_ids (id) SELECT max(id) FROM accounts HAVING count(*) > 0")


def downgrade() -> None:
    op.drop_table("account_ids")
