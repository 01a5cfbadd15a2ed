"""Errors of the reference side, each naming the file or field at fault."""

from __future__ import annotations


class CaseError(Exception):
    """A case file, checkpoint, base folder or adapter that cannot be used as asked."""

    def __init__(self, file: str | None, message: str):
        super().__init__(f"{file}: {message}" if file else message)
        self.file = file


class ReferenceMissing(CaseError):
    """A published checkpoint is not in the reference folder."""
