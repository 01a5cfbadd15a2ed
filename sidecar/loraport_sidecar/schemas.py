"""The JSON Schemas in ``schemas/`` (the single source shared with the TS side), compiled to validators once."""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path

from jsonschema import Draft202012Validator
from referencing import Registry, Resource


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
        resources = []
        self.message = json.loads((self.root / "protocol" / "message.schema.json").read_text())
        for p in sorted((self.root / "protocol").glob("*.schema.json")):
            doc = json.loads(p.read_text())
            resources.append((doc["$id"], Resource.from_contents(doc)))
        self.registry = Registry().with_resources(resources)
        base = self.message["$id"]
        self.kinds = {
            kind: Draft202012Validator({"$ref": f"{base}#/$defs/{name}"}, registry=self.registry)
            for kind, name in [("request", "RequestMessage"), ("cancel", "CancelMessage"), ("result", "ResultMessage"),
                               ("error", "ErrorMessage"), ("progress", "ProgressMessage"), ("event", "EventMessage")]
        }
        self.params: dict[str, Draft202012Validator] = {}
        self.results: dict[str, Draft202012Validator] = {}
        for p in sorted((self.root / "methods").glob("*.schema.json")):
            doc = json.loads(p.read_text())
            name = p.name.removesuffix(".schema.json")
            self.params[name] = Draft202012Validator(doc["properties"]["params"])
            self.results[name] = Draft202012Validator(doc["properties"]["result"])

    @cached_property
    def methods(self) -> list[str]:
        return sorted(self.params)


def first_error(validator: Draft202012Validator, doc) -> str | None:
    """The most relevant validation error as one line naming the field, or None when valid."""
    err = next(iter(sorted(validator.iter_errors(doc), key=lambda e: e.path)), None)
    if err is None:
        return None
    where = "/".join(str(p) for p in err.absolute_path) or "(root)"
    return f"{where}: {err.message}"
