"""Queue surgery: a queue can be held (`held_at`, `hold_reason` on queues), and an item
has a place within its priority (`seq` on items) that moving it to the top or bottom
changes. The take order becomes (priority, seq, id); existing items get their
enqueue time as their place, which keeps the order they had.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("queues", sa.Column("held_at", sa.Float, nullable=True))
    op.add_column("queues", sa.Column("hold_reason", sa.Text, nullable=True))
    op.add_column("items", sa.Column("seq", sa.Float, nullable=False, server_default="0"))
    op.execute("UPDATE items SET seq = created_at")
    op.drop_index("ix_items_claim", table_name="items")
    op.create_index("ix_items_claim", "items", ["queue_id", "state", "priority", "seq", "id"])


def downgrade() -> None:
    op.drop_index("ix_items_claim", table_name="items")
    op.create_index("ix_items_claim", "items", ["queue_id", "state", "priority", "id"])
    with op.batch_alter_table("items") as batch:
        batch.drop_column("seq")
    with op.batch_alter_table("queues") as batch:
        batch.drop_column("hold_reason")
        batch.drop_column("held_at")
