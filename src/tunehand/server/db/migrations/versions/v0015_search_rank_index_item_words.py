"""PostgreSQL only: the text index's rank index (`ix_search_words_rank`, migration 0013)
also carries `item_words`, so a search of several words reads its candidates from the
index alone. Before, each candidate row of the longest word's range was a heap fetch
for the `LIKE` on the other words; the heap is in insertion order, so on 50,000 tracks a
two-word query touched about 5,700 pages and took ~20 ms in the database instead of ~4.
SQLite needs nothing: its WITHOUT ROWID table is the key's b-tree, with every column.
"""

from alembic import op

revision = "0015"
down_revision = "0014"


def _rank_index(include: list[str]) -> None:
    op.drop_index("ix_search_words_rank", table_name="search_words")
    op.create_index(
        "ix_search_words_rank",
        "search_words",
        ["kind", "word"],
        postgresql_include=include,
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rank_index(["owner", "points", "sort_key", "item_words"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rank_index(["owner", "points", "sort_key"])
