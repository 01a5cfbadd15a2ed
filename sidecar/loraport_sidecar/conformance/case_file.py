"""Reading a declarative case file (the format is documented in conformance/README.md)."""

from __future__ import annotations

import json
from typing import Any

from .errors import CaseError

ADAPTER_SOURCES = ("published", "peft", "loralib")


def load_case(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            case = json.load(f)
    except FileNotFoundError:
        raise CaseError(path, "no such case file") from None
    except json.JSONDecodeError as e:
        raise CaseError(path, f"not JSON: {e}") from None
    if not isinstance(case, dict):
        raise CaseError(path, "a case file holds one JSON object")
    for key in ("id", "base", "adapter"):
        if key not in case:
            raise CaseError(path, f"missing required field '{key}'")
    src = case["adapter"].get("source")
    if src not in ADAPTER_SOURCES:
        raise CaseError(path, f"adapter.source is {src!r}; expected one of {list(ADAPTER_SOURCES)}")
    if "family" not in case["base"]:
        raise CaseError(path, "base.family is required")
    return case
