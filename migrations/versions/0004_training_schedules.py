"""training schedules and their fires

Revision ID: 0004_training_schedules
Revises: 0003_job_change_notify
Create Date: 2026-11-23 09:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_training_schedules"
down_revision: str | None = "0003_job_change_notify"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "training_schedules",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("cron", sa.String(length=120), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("template", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("lookback", sa.String(length=16), nullable=True),
        sa.Column("misfire_policy", sa.String(length=16), nullable=False),
        sa.Column("overlap_policy", sa.String(length=16), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "misfire_policy IN ('run_once', 'skip')", name=op.f("ck_training_schedules_misfire_policy")
        ),
        sa.CheckConstraint("overlap_policy IN ('skip', 'queue')", name=op.f("ck_training_schedules_overlap_policy")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_schedules")),
        sa.UniqueConstraint("name", name=op.f("uq_training_schedules_name")),
    )
    op.create_index(
        "ix_training_schedules_paused_next_fire_at", "training_schedules", ["paused", "next_fire_at"], unique=False
    )
    op.create_table(
        "schedule_fires",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("schedule_id", sa.UUID(), nullable=False),
        sa.Column("fire_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('started', 'skipped_overlap', 'refused')", name=op.f("ck_schedule_fires_outcome")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["training_jobs.id"], name=op.f("fk_schedule_fires_job_id_training_jobs"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["training_schedules.id"],
            name=op.f("fk_schedule_fires_schedule_id_training_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_fires")),
        sa.UniqueConstraint("schedule_id", "fire_time", name="uq_schedule_fires_schedule_id_fire_time"),
    )
    op.create_index(op.f("ix_schedule_fires_job_id"), "schedule_fires", ["job_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_schedule_fires_job_id"), table_name="schedule_fires")
    op.drop_table("schedule_fires")
    op.drop_index("ix_training_schedules_paused_next_fire_at", table_name="training_schedules")
    op.drop_table("training_schedules")
