"""The op registry: handlers registered by method name, and the context they run with.

Adding an op = a module in ``loraport_sidecar/ops/`` with ``@op("name")`` handlers, plus
``schemas/methods/<name>.schema.json``. Handlers run on the compute thread, one at a time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .protocol import Cancelled, DeadlineExceeded

if TYPE_CHECKING:
    import torch

    from .handles import HandleTable

# handler(ctx, params, tensors) -> (result dict, tensors as list or {name: tensor} or None)
Handler = Callable[["OpContext", dict, "list[torch.Tensor]"], "tuple[dict, Any]"]

OPS: dict[str, Handler] = {}


def op(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        if name in OPS and OPS[name] is not fn:
            raise ValueError(f"op {name!r} registered twice ({OPS[name].__module__} and {fn.__module__})")
        OPS[name] = fn
        return fn
    return register


@dataclass
class OpContext:
    """What a handler may use besides its params and tensors."""

    request_id: int
    method: str
    tensor_names: list[str | None]
    models: "HandleTable"
    _cancelled: Callable[[], bool]
    _send_progress: Callable[[str, float, float | None, str | None, str | None], None]
    deadline: float | None = None  # ms since epoch
    limits: dict = field(default_factory=dict)  # the sidecar's message limits (maxMessageBytes, maxHeaderBytes)
    _last_progress: float = 0.0

    def named_tensors(self, tensors: list) -> dict[str, Any]:
        """The request's tensors by descriptor name (unnamed ones as ``#i``)."""
        return {(n if n is not None else f"#{i}"): t for i, (n, t) in enumerate(zip(self.tensor_names, tensors))}

    def cancelled(self) -> bool:
        """True once the caller cancelled this request or its deadline passed. Check it in long loops."""
        return self._cancelled() or (self.deadline is not None and time.time() * 1000 > self.deadline)

    def check_cancelled(self) -> None:
        """Raise ``Cancelled`` / ``DeadlineExceeded`` if the request should stop."""
        if self._cancelled():
            raise Cancelled(f"{self.method} #{self.request_id} cancelled by the caller")
        if self.deadline is not None and time.time() * 1000 > self.deadline:
            raise DeadlineExceeded(f"{self.method} #{self.request_id} passed its deadline")

    def progress(self, done: float, total: float | None = None, message: str | None = None, *, phase: str | None = None,
                 unit: str | None = None, throttle: bool = True) -> None:
        """Send a progress event (throttled to ~20 per second; the last one, done == total, always goes, and so does
        one sent with throttle=False: a stage change the caller must see)."""
        now = time.monotonic()
        if throttle and total is not None and done < total and now - self._last_progress < 0.05:
            return
        self._last_progress = now
        self._send_progress(phase or self.method, done, total, unit, message)
