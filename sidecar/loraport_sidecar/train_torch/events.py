"""Rank 0's progress events: JSON lines appended (and flushed) to the run's events file, which the launcher tails.
A failing rank writes its error beside it (`<events>.rank<N>.error.json`) for the launcher to report."""

from __future__ import annotations

import json
import os


class EventWriter:
    def __init__(self, path: str, rank: int):
        self.path = path
        self.rank = rank
        self._f = open(path, "a", encoding="utf8") if rank == 0 else None

    def emit(self, kind: str, **fields) -> None:
        if self._f is None:
            return
        self._f.write(json.dumps({"type": kind, **fields}) + "\n")
        self._f.flush()

    def error(self, code: str, message: str) -> None:
        tmp = f"{self.path}.rank{self.rank}.error.json.tmp"
        with open(tmp, "w", encoding="utf8") as f:
            json.dump({"rank": self.rank, "code": code, "message": message}, f)
        os.replace(tmp, error_path(self.path, self.rank))

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


def error_path(events: str, rank: int) -> str:
    return f"{events}.rank{rank}.error.json"
