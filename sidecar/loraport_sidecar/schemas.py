"""The JSON Schemas in ``schemas/`` (the single source shared with the TS side), compiled to validators once."""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path

from jsonschema import Draft202012Validator

from .fastcheck import Unsupported, compile_schema


def schemas_dir() -> Path:
    env = os.environ.get("LORAPORT_SCHEMAS_DIR")
    if env:
        return Path(env)
    # sidecar/loraport_sidecar/schemas.py → repository root / schemas
    return Path(__file__).resolve().parents[2] / "schemas"


class Schemas:
    """Validators for the message kinds and for each method's params and result."""

    def __init__(self, root: Path | None = None):
        self.root = root or schemas_dir()
        if not (self.root / "protocol" / "message.schema.json").is_file():
            raise FileNotFoundError(f"{self.root}: protocol schemas not found (set LORAPORT_SCHEMAS_DIR)")
        self.message = json.loads((self.root / "protocol" / "message.schema.json").read_text())
        # Validators over fully inlined schemas: resolving `$ref`s through a registry on every message costs
        # ~200 µs per header; inlined, validation is a few µs. The documents are the same.
        self.kinds = {
            kind: Checker(_inline(self.message["$defs"][name], self.message, self.root / "protocol"))
            for kind, name in [("request", "RequestMessage"), ("cancel", "CancelMessage"), ("result", "ResultMessage"),
                               ("error", "ErrorMessage"), ("progress", "ProgressMessage"), ("event", "EventMessage")]
        }
        self.params: dict[str, Checker] = {}
        self.results: dict[str, Checker] = {}
        for p in sorted((self.root / "methods").glob("*.schema.json")):
            doc = json.loads(p.read_text())
            name = p.name.removesuffix(".schema.json")
            self.params[name] = Checker(_inline(doc["properties"]["params"], doc, p.parent))
            self.results[name] = Checker(_inline(doc["properties"]["result"], doc, p.parent))

    @cached_property
    def methods(self) -> list[str]:
        return sorted(self.params)


class Checker:
    """One schema: a compiled fast yes/no check, and jsonschema for the error message when the answer is no."""

    def __init__(self, schema: dict):
        self.schema = schema
        self.validator = Draft202012Validator(schema)
        try:
            self.fast = compile_schema(schema)
        except Unsupported:
            self.fast = None

    def error(self, doc) -> str | None:
        """None when `doc` is valid, else the most relevant error as one line naming the field."""
        if self.fast is not None and self.fast(doc):
            return None
        return first_error(self.validator, doc)


def _inline(node, doc: dict, folder: Path, depth: int = 0):
    """`node` with every `$ref` replaced by its target: `#/$defs/...` within `doc`, `file.json` beside it."""
    if depth > 32:
        raise ValueError("schema $ref nesting too deep (a cycle?)")
    if isinstance(node, list):
        return [_inline(x, doc, folder, depth) for x in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        file, _, pointer = ref.partition("#")
        target_doc = json.loads((folder / file).read_text()) if file else doc
        target = target_doc
        for part in [p for p in pointer.split("/") if p]:
            target = target[part]
        return _inline(target, target_doc, folder, depth + 1)
    return {k: _inline(v, doc, folder, depth) for k, v in node.items() if k not in ("$id", "$schema", "$defs")}


def first_error(validator: Draft202012Validator, doc) -> str | None:
    """The most relevant validation error as one line naming the field, or None when valid."""
    err = next(iter(sorted(validator.iter_errors(doc), key=lambda e: e.path)), None)
    if err is None:
        return None
    where = "/".join(str(p) for p in err.absolute_path) or "(root)"
    return f"{where}: {err.message}"
