"""Fixtures for fault injection: enough candles for long training jobs."""

from __future__ import annotations

import pytest

from app.services import candles as candles_service


@pytest.fixture
def long_data(db):
    candles_service.generate_synthetic(db, "BTCUSDT", "1m", 60_000, seed=2)
    db.commit()
