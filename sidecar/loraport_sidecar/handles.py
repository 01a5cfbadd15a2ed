"""The model-handle table: models live in the sidecar, TS holds their handle ids (``m1``, ``m2``, ...)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelEntry:
    model: Any  # torch.nn.Module (a PeftModel once a PEFT adapter is attached)
    architecture: str
    device: str
    dtype: str
    # "peft" | "loralib" | None; which kind of adapter is attached
    adapter_kind: str | None = None
    adapters: list[str] = field(default_factory=list)
    loralib_meta: dict = field(default_factory=dict)
    # The Hugging Face folder it was loaded from (its tokenizer files travel with exports); None otherwise.
    source_dir: str | None = None


class UnknownHandle(LookupError):
    pass


class HandleTable:
    def __init__(self) -> None:
        self._entries: dict[str, ModelEntry] = {}
        self._ids = itertools.count(1)

    def add(self, entry: ModelEntry) -> str:
        handle = f"m{next(self._ids)}"
        self._entries[handle] = entry
        return handle

    def get(self, handle: str) -> ModelEntry:
        try:
            return self._entries[handle]
        except KeyError:
            raise UnknownHandle(f"unknown model handle {handle!r} (released, or never loaded in this sidecar)") from None

    def release(self, handle: str) -> bool:
        return self._entries.pop(handle, None) is not None

    def __len__(self) -> int:
        return len(self._entries)
