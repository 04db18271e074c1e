"""the strategy's package and version on every saved configuration

Strategies are installed packages (the `trad.strategies` entry points): a configuration records
the distribution and version of the strategy that produced it, so results of different versions
are never mixed. Nullable: configurations saved before are of an unknown version (trad's own
strategies, then), and the previous release, which does not write them, keeps running.

Revision ID: 0006_strategy_versions
Revises: 0005_candle_revision
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_strategy_versions"
down_revision: str | None = "0005_candle_revision"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("trained_configurations", sa.Column("strategy_package", sa.String(length=128), nullable=True))
    op.add_column("trained_configurations", sa.Column("strategy_version", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("trained_configurations", "strategy_version")
    op.drop_column("trained_configurations", "strategy_package")
