"""Devices remember the name they last asked for, and whether it was a default (and a
device code keeps whether its device's name is one).

A default name (`HOST`, `HOST-mpd`) is made unique within the account (`HOST-2`), and a
name is only set again when the device asks for another one, so a rename outlives its
reconnects. Existing devices have asked for nothing yet: their next login or channel
sets their name by the new rules.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("asked_name", sa.String(length=128), nullable=True))
        batch_op.add_column(
            sa.Column("asked_default", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("device_codes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("name_default", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("device_codes", schema=None) as batch_op:
        batch_op.drop_column("name_default")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("asked_default")
        batch_op.drop_column("asked_name")
