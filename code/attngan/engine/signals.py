"""Ctrl-C / SIGTERM handling: finish the current step, checkpoint, exit cleanly."""
from __future__ import annotations

import logging
import signal

log = logging.getLogger('attngan')


class GracefulInterrupt:
    """Context manager; ``stop_requested`` turns True on SIGINT/SIGTERM. A second Ctrl-C aborts at once."""

    def __init__(self) -> None:
        self.stop_requested = False
        self._previous = {}

    def _handler(self, signum, frame):
        if self.stop_requested:
            raise KeyboardInterrupt
        self.stop_requested = True
        log.warning('%s received: finishing this step, writing a checkpoint, then exiting '
                    '(press Ctrl-C again to abort without saving)', signal.Signals(signum).name)

    def __enter__(self) -> 'GracefulInterrupt':
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
