"""Run one pipeline service in-process on a thread, with real ZeroMQ sockets.

`Service.run` installs signal handlers, which only the main thread may do, so tests drive
`start`, `loop` and `finish` themselves: the same steps, on a thread.
"""

from __future__ import annotations

import threading
from typing import Any

from shared.config import Settings, load_settings
from shared.service import Service


def settings_for(service: str, **values: Any) -> Settings:
    """Defaults of `service` (no environment), metrics off, `values` overriding."""
    settings = load_settings(service, argv=[], env={})
    settings.values.update(metrics_port=0, **values)
    return settings


class Running:
    """Context manager: the service runs on a thread until the block ends."""

    def __init__(self, cls: type[Service], **values: Any) -> None:
        self.service = cls(settings_for(cls.name, **values))
        self.thread = threading.Thread(target=self._run, name=f"svc-{cls.name}", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.service.loop()
        except BaseException as exc:  # surfaced by __exit__
            self.error = exc

    def __enter__(self) -> Service:
        self.service.start()
        self.thread.start()
        return self.service

    def join(self, timeout: float = 30.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "service loop did not end"

    def __exit__(self, *exc: object) -> None:
        self.service.stop.set()
        self.thread.join(15)
        self.service.finish()
        if self.error is not None:
            raise self.error
