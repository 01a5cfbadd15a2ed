"""What PEFT and transformers warn while an adapter loads: the check behind "PEFT loads it with no warning".

Warnings come two ways (the warnings module and logging), so both are captured. Library deprecation notices
(FutureWarning, DeprecationWarning) are not about the adapter files and are left out.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

# transformers' logger does not propagate to the root logger, so each library logger gets the handler too.
_LOGGERS = ("peft", "transformers", "safetensors", "")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []
        self._seen: set[int] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if id(record) in self._seen:  # a propagating record reaches the root handler a second time
            return
        self._seen.add(id(record))
        self.messages.append(f"{record.name}: {record.getMessage()}")


@contextlib.contextmanager
def load_warnings() -> Iterator[list[str]]:
    """`with load_warnings() as msgs: PeftModel.from_pretrained(...)` — `msgs` holds every warning once the block ends."""
    handler = _Records()
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        if lg.name != "root":
            lg.setLevel(logging.WARNING)
    msgs: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield msgs
    finally:
        for lg, level in zip(loggers, levels):
            lg.removeHandler(handler)
            lg.setLevel(level)
    msgs.extend(str(w.message) for w in caught if not issubclass(w.category, (FutureWarning, DeprecationWarning)))
    msgs.extend(handler.messages)
