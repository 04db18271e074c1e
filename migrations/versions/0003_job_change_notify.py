"""notify listeners when a job row changes

Every committed change to a training_jobs row sends NOTIFY trad_job_changes with the job id, so
the API can push progress to its followers without polling. PostgreSQL delivers notifications
at commit and folds duplicates within one transaction.

Revision ID: 0003_job_change_notify
Revises: 0002_results_stats
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_job_change_notify"
down_revision: str | None = "0002_results_stats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "trad_job_changes"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION trad_notify_job_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', NEW.id::text);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER training_jobs_notify_change
        AFTER INSERT OR UPDATE ON training_jobs
        FOR EACH ROW EXECUTE FUNCTION trad_notify_job_change()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER training_jobs_notify_change ON training_jobs")
    op.execute("DROP FUNCTION trad_notify_job_change()")
