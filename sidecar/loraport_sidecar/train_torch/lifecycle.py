"""Process lifecycle: every process of a run dies with its parent, so no rank outlives the launcher or TypeScript."""

from __future__ import annotations

import ctypes
import signal


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies (Linux PR_SET_PDEATHSIG; survives exec, so it also holds for
    torchrun started with it as preexec_fn)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:  # not Linux: the launcher's process-group kill still applies
        pass
