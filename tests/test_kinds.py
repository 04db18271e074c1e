"""The kind registry: each kind reads its limits from the settings and names a handler that loads."""

from __future__ import annotations

import pytest

from app.kinds import KINDS, Limits, UnknownKind, limits
from app.settings import Settings


def test_each_kind_reads_its_limits_from_the_settings():
    settings = Settings(
        training_max_attempts=7, training_timeout_s=700, training_stall_timeout_s=70,
        smoke_max_attempts=5, smoke_timeout_s=500, smoke_stall_timeout_s=50,
        candles_refresh_max_attempts=4, candles_refresh_timeout_s=400, candles_refresh_stall_timeout_s=40,
    )  # fmt: skip
    assert limits(settings, "training") == Limits(7, 700, 70)
    assert limits(settings, "smoke") == Limits(5, 500, 50)
    assert limits(settings, "candles_refresh") == Limits(4, 400, 40)
    assert limits(Settings(), "candles_refresh") == Limits(3, 3600, 300)
    assert limits(Settings(), "smoke") == Limits(2, 120, 60)
    with pytest.raises(UnknownKind):
        limits(settings, "nope")


def test_every_kind_names_a_handler_that_loads():
    assert set(KINDS) == {"training", "smoke", "candles_refresh"}  # the names stored in training_jobs.kind
    for kind in KINDS.values():
        assert callable(kind.load_handler()), kind.handler
