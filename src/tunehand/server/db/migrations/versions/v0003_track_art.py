"""Cover art: each track's picture id (a content hash) and where the picture is."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("tracks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("art_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("art_file", sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f("ix_tracks_art_id"), ["art_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tracks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tracks_art_id"))
        batch_op.drop_column("art_file")
        batch_op.drop_column("art_id")
