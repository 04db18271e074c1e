"""a schedule's fire may run a candles refresh before its training job

`schedule_fires.refresh_job_id`: the `candles_refresh` job a fire ran first (its template asked
for `refresh`), and two more outcomes: `refreshing` (the refresh runs; the training job starts
when it succeeds) and `refresh_failed` (it failed or was canceled: nothing was trained).
Expand only: the previous release never writes either, and reads the column as absent.

Revision ID: 0007_candles_refresh
Revises: 0006_strategy_versions
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_candles_refresh"
down_revision: str | None = "0006_strategy_versions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "outcome IN ('started', 'skipped_overlap', 'refused')"
NEW = "outcome IN ('started', 'refreshing', 'refresh_failed', 'skipped_overlap', 'refused')"


def upgrade() -> None:
    op.add_column("schedule_fires", sa.Column("refresh_job_id", sa.UUID(), nullable=True))
    op.create_foreign_key(
        op.f("fk_schedule_fires_refresh_job_id_training_jobs"),
        "schedule_fires",
        "training_jobs",
        ["refresh_job_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(op.f("ix_schedule_fires_refresh_job_id"), "schedule_fires", ["refresh_job_id"])
    op.drop_constraint(op.f("ck_schedule_fires_outcome"), "schedule_fires", type_="check")
    op.create_check_constraint(op.f("ck_schedule_fires_outcome"), "schedule_fires", NEW)
    op.create_index(
        "ix_schedule_fires_refreshing",
        "schedule_fires",
        ["refresh_job_id"],
        postgresql_where=sa.text("outcome = 'refreshing'"),
    )


def downgrade() -> None:
    op.drop_index("ix_schedule_fires_refreshing", table_name="schedule_fires")
    op.execute("DELETE FROM schedule_fires WHERE outcome IN ('refreshing', 'refresh_failed')")
    op.drop_constraint(op.f("ck_schedule_fires_outcome"), "schedule_fires", type_="check")
    op.create_check_constraint(op.f("ck_schedule_fires_outcome"), "schedule_fires", OLD)
    op.drop_index(op.f("ix_schedule_fires_refresh_job_id"), table_name="schedule_fires")
    op.drop_constraint(op.f("fk_schedule_fires_refresh_job_id_training_jobs"), "schedule_fires", type_="foreignkey")
    op.drop_column("schedule_fires", "refresh_job_id")
