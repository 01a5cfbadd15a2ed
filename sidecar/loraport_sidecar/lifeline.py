"""The sidecar must not outlive its parent: stdin EOF (the parent's end of the pipe closed) and, on Linux,
PR_SET_PDEATHSIG, which covers a parent killed with SIGKILL."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from typing import Callable

PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except OSError:
        return False


def watch_stdin(on_eof: Callable[[], None]) -> threading.Thread:
    """Read stdin until EOF on a daemon thread, then call ``on_eof``."""
    def run() -> None:
        try:
            while sys.stdin.buffer.read1(65536):
                pass
        except (OSError, ValueError):
            pass
        on_eof()
    t = threading.Thread(target=run, name="lifeline", daemon=True)
    t.start()
    return t


def parent_gone(original_ppid: int) -> bool:
    return os.getppid() != original_ppid
