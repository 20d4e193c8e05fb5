"""The session's queue in a column of its own, so a change that leaves the queue alone
(play, pause, seek) writes a few hundred bytes instead of the whole queue.

Existing sessions are split: their `queue` and `order` move from `state` to `queue`.
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

_sessions = sa.table(
    "sessions",
    sa.column("account_id", sa.Integer),
    sa.column("state", sa.Text),
    sa.column("queue", sa.Text),
)


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queue", sa.Text(), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(sa.select(_sessions.c.account_id, _sessions.c.state)).fetchall()
    for account_id, raw in rows:
        state = json.loads(raw)
        queue = {"queue": state.pop("queue", []), "order": state.pop("order", [])}
        conn.execute(
            sa.update(_sessions)
            .where(_sessions.c.account_id == account_id)
            .values(state=json.dumps(state), queue=json.dumps(queue))
        )


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_sessions.c.account_id, _sessions.c.state, _sessions.c.queue)
    ).fetchall()
    for account_id, raw, queue in rows:
        state = json.loads(raw)
        if queue is not None:
            state.update(json.loads(queue))
        conn.execute(
            sa.update(_sessions)
            .where(_sessions.c.account_id == account_id)
            .values(state=json.dumps(state))
        )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("queue")
