"""The errors of a torch-engine run; `code` is the loraport error code the TypeScript side raises."""

from __future__ import annotations


class TrainRunError(Exception):
    """A run that cannot start or did not finish; the message says what is wrong and what to do."""

    code = "E_TRAIN"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code:
            self.code = code


class ConfigError(TrainRunError):
    code = "E_CONFIG"


class DataError(TrainRunError):
    code = "E_DATA"


class WorkerFailedError(TrainRunError):
    """A rank died or raised; the last checkpoint (if any) is whole."""

    code = "E_WORKER_FAILED"
