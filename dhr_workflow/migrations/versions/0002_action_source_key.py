"""action source key

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("action", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_key", sa.String(length=400), nullable=True))
        batch_op.create_unique_constraint("uq_action_source_key", ["review_id", "source_key"])


def downgrade() -> None:
    with op.batch_alter_table("action", schema=None) as batch_op:
        batch_op.drop_constraint("uq_action_source_key", type_="unique")
        batch_op.drop_column("source_key")
