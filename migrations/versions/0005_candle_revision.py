"""a revision number raised by every change of candles

One row, `candle_revision`, whose number a statement-level trigger on `candles` raises in the
same transaction as any insert, update, delete or truncate of candles. The API keeps the candle
checks of its starts by request, with the revision they were made at, and admits a job on a kept
check only while that revision is still the current one (the insert's own condition), so a check
never outlives the candles it looked at.

Revision ID: 0005_candle_revision
Revises: 0004_training_schedules
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_candle_revision"
down_revision: str | None = "0004_training_schedules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "candle_revision",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candle_revision")),
    )
    op.execute("INSERT INTO candle_revision (id, revision) VALUES (1, 0)")
    op.execute(
        """
        CREATE FUNCTION trad_raise_candle_revision() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO candle_revision (id, revision) VALUES (1, 1)
            ON CONFLICT (id) DO UPDATE SET revision = candle_revision.revision + 1;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER candles_raise_revision
        AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON candles
        FOR EACH STATEMENT EXECUTE FUNCTION trad_raise_candle_revision()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER candles_raise_revision ON candles")
    op.execute("DROP FUNCTION trad_raise_candle_revision()")
    op.drop_table("candle_revision")
