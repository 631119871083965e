"""Noticing that the terminal went away, so the app never outlives its user's session.

When an SSH connection drops or a tmux pane is killed, the kernel sends SIGHUP to
the session leader only. Launched straight from a shell, the app is in the
foreground group and is told too; launched under `make run` (make leads the
session and does not pass the signal on) it is not. Its terminal then reads
end-of-file forever: Textual's input thread spins on it and an in-app agent keeps
its name, so the next `make run` is refused ("vm-local is already running").

So the app also asks the kernel: a thread blocks in poll() on the terminal for
hang-up alone (no input events requested, so it never takes the user's keys and
costs nothing while it waits), and SIGHUP and SIGTERM are handled. Any of them
calls `on_hangup` once, on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Callable

_GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL


def watch(loop: asyncio.AbstractEventLoop, on_hangup: Callable[[], None]) -> None:
    """Call `on_hangup` on `loop` when the controlling terminal hangs up or the
    process gets SIGHUP or SIGTERM (once)."""
    fired = threading.Event()

    def fire() -> None:
        if not fired.is_set():
            fired.set()
            on_hangup()

    for signum in (signal.SIGHUP, signal.SIGTERM):
        if signal.getsignal(signum) == signal.SIG_IGN:
            continue  # nohup: the user asked for the hang-up to be ignored
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(signum, fire)
    fd = _terminal_fd()
    if fd is None:
        return

    def wait() -> None:
        poller = select.poll()
        poller.register(fd, 0)  # hang-up, error and invalid are always reported
        while True:
            try:
                events = poller.poll()
            except InterruptedError:
                continue
            if any(mask & _GONE for _, mask in events):
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(fire)
                return

    threading.Thread(target=wait, name="terminal-hangup", daemon=True).start()


def _terminal_fd() -> int | None:
    stream = sys.__stdin__
    if stream is None:
        return None
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return None
    return fd if os.isatty(fd) else None
