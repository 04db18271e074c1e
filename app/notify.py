"""sd_notify messages for systemd (Type=notify). Silent when not run by systemd."""

from __future__ import annotations

import sdnotify

_notifier = sdnotify.SystemdNotifier()


def ready(status: str = "ready") -> None:
    _notifier.notify(f"READY=1\nSTATUS={status}")


def status(text: str) -> None:
    _notifier.notify(f"STATUS={text}")


def watchdog() -> None:
    _notifier.notify("WATCHDOG=1")


def stopping(status: str = "stopping") -> None:
    _notifier.notify(f"STOPPING=1\nSTATUS={status}")
