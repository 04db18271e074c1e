"""The attempt's watchdog, in this process: it interrupts again when its interruption is caught
and the attempt runs on, never once the attempt has said it is ending, and it beats meanwhile."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from app.execution import heartbeat as heartbeat_module
from app.execution import signals
from app.execution.heartbeat import INTERRUPT_TRIES, Heartbeat
from app.settings import Settings
from tests.support import wait_until


@pytest.fixture
def alarms(monkeypatch) -> Iterator[list[float]]:
    """SIGALRM counted instead of raised; the watchdog's repeat interval cut to a fraction of a second."""
    monkeypatch.setattr(heartbeat_module, "INTERRUPT_REPEAT_S", 0.2)
    received: list[float] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: received.append(time.monotonic()))
    previous_checkpoint = signal.getsignal(signals.CHECKPOINT_SIGNAL)
    signals.install()
    try:
        yield received
    finally:
        signals.install()  # this process's interruption forgotten
        signal.signal(signal.SIGALRM, previous)
        signal.signal(signals.CHECKPOINT_SIGNAL, previous_checkpoint)


def watchdog(settings: Settings) -> Heartbeat:
    """A watchdog past its hard timeout from the start (attempt 0 does not exist: beats touch no row)."""
    return Heartbeat(settings, 0, timeout_s=0.0, stall_timeout_s=1e9, last_progress=time.monotonic)


def test_an_interruption_the_job_swallowed_is_sent_again(clean, alarms):
    heartbeat = watchdog(clean)
    heartbeat.start()
    try:
        wait_until(lambda: len(alarms) >= INTERRUPT_TRIES, timeout=15, what="the interruption sent again")
        assert heartbeat.reason == "timeout" and signals.interrupted() == "timeout"
        beats = heartbeat._last_beat
        wait_until(lambda: heartbeat._last_beat > beats, timeout=10, what="a beat after the interruptions")
        assert len(alarms) == INTERRUPT_TRIES, "no more than INTERRUPT_TRIES interruptions"
    finally:
        heartbeat.stop()
        heartbeat.join(5)


def test_no_interruption_once_the_attempt_is_ending(clean, alarms):
    heartbeat = watchdog(clean)
    heartbeat.start()
    try:
        wait_until(lambda: alarms, timeout=10, what="the first interruption")
        heartbeat.ending()
        beats = heartbeat._last_beat
        wait_until(lambda: heartbeat._last_beat > beats + 1.5, timeout=10, what="two more beats")
        assert len(alarms) == 1
    finally:
        heartbeat.stop()
        heartbeat.join(5)
