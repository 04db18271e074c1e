"""training trials: feasibility, reason, duration, walk-forward window, search statistics

Revision ID: 0002_results_stats
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_results_stats"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("training_trials", sa.Column("feasible", sa.Boolean(), server_default="true", nullable=False))
    op.add_column("training_trials", sa.Column("reason", sa.Text(), nullable=True))
    op.add_column("training_trials", sa.Column("duration_s", sa.Float(), nullable=True))
    op.add_column("training_trials", sa.Column("window", sa.Integer(), server_default="0", nullable=False))
    op.add_column(
        "training_trials",
        sa.Column("stats", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("training_trials", "stats")
    op.drop_column("training_trials", "window")
    op.drop_column("training_trials", "duration_s")
    op.drop_column("training_trials", "reason")
    op.drop_column("training_trials", "feasible")
