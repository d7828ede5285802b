"""Brian2 as nsnn imports it: every nsnn module that uses Brian2 takes it from here
(``from nsnn.stdp._brian import b2``), so that whichever is imported first keeps SIGINT's disposition.

Importing Brian2 replaces the SIGINT handler with one that calls the handler it found, which fails
(``TypeError: 'Handlers' object is not callable``) when that is not a function: a process started with
SIGINT ignored (a background job of a non-interactive shell, ``nohup``-style launchers) crashed at a
``kill -INT`` instead of ignoring it, as any program that ignores SIGINT does.
"""

from __future__ import annotations

import signal
import threading

import brian2 as b2

__all__ = ["b2"]


def _keep_sigint_disposition() -> None:
    """Put back SIGINT's disposition from before Brian2's import when it was ``SIG_IGN`` or ``SIG_DFL``."""
    previous = getattr(signal.getsignal(signal.SIGINT), "previous_handler", None)
    if previous in (signal.SIG_IGN, signal.SIG_DFL) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, previous)


_keep_sigint_disposition()  # Brian2, imported above, has just set its handler
