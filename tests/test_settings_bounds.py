"""The liveness and stop bounds hold together: settings that cannot work are refused, and the
default stop budget fits inside the worker unit's stop timeout."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from app.settings import Settings
from tests.support import ROOT


def test_a_stale_bound_a_heartbeat_cannot_meet_is_refused():
    with pytest.raises(ValidationError, match="HEARTBEAT_STALE_S"):
        Settings(heartbeat_interval_s=5, maintenance_interval_s=5, heartbeat_stale_s=10)
    assert Settings(heartbeat_interval_s=5, maintenance_interval_s=5, heartbeat_stale_s=11).heartbeat_stale_s == 11


def test_the_stop_budget_fits_inside_the_worker_units_stop_timeout():
    unit = (ROOT / "ops/systemd/trad-worker@.service").read_text()
    timeout_stop = float(re.search(r"^TimeoutStopSec=(\d+)", unit, re.M).group(1))
    defaults = Settings()
    assert defaults.stop_budget_s + 5 <= timeout_stop, "the worker needs time to tear down after the job"


@pytest.mark.parametrize("value", ["*", "localhost", "10.0.0.1/8", "127.0.0.1, nginx"])
def test_trusted_proxies_are_addresses_or_networks(value):
    """A name or `*` would let any client name itself in X-Forwarded-For."""
    with pytest.raises(ValidationError, match="FORWARDED_ALLOW_IPS"):
        Settings(forwarded_allow_ips=value)


def test_trusted_proxies_default_to_loopback_and_may_be_none():
    assert Settings().trusted_proxies == ["127.0.0.1", "::1"]
    assert Settings(forwarded_allow_ips="10.0.0.0/8, 192.0.2.7").trusted_proxies == ["10.0.0.0/8", "192.0.2.7"]
    assert Settings(forwarded_allow_ips="").trusted_proxies == []
