"""Where a run's output line or metric record came from, for runs with several output
streams read at once (the pods of a Kubernetes Job): a nullable `source` on run_logs
and run_metrics. Existing rows keep NULL, which is what a run with one stream has.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("run_logs", sa.Column("source", sa.String(253), nullable=True))
    op.add_column("run_metrics", sa.Column("source", sa.String(253), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_metrics") as batch:
        batch.drop_column("source")
    with op.batch_alter_table("run_logs") as batch:
        batch.drop_column("source")
