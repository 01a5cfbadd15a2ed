"""A compiled yes/no check for the JSON Schema keywords the protocol schemas use.

jsonschema walks a schema with a fresh validator object per subschema: ~150 µs for one request header, most of
a small call's budget. This compiles the same schema once into closures (a few µs). It only answers valid or
not; when a document is invalid, jsonschema itself produces the error message. A schema using any keyword not
implemented here is refused at compile time (the caller then uses jsonschema alone), and a test checks that
both agree on valid and invalid documents.
"""

from __future__ import annotations

import re
from typing import Any, Callable

Check = Callable[[Any], bool]

_ANNOTATIONS = {"title", "description", "$comment", "default", "examples", "$id", "$schema", "$defs", "deprecated", "readOnly", "writeOnly"}


class Unsupported(Exception):
    pass


def _is_type(t: str) -> Check:
    return {
        "object": lambda x: isinstance(x, dict),
        "array": lambda x: isinstance(x, list),
        "string": lambda x: isinstance(x, str),
        "null": lambda x: x is None,
        "boolean": lambda x: isinstance(x, bool),
        "number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
        # 2020-12: a float with an integral value is an integer.
        "integer": lambda x: (isinstance(x, int) and not isinstance(x, bool)) or (isinstance(x, float) and x.is_integer()),
    }[t]


def _json_equal(a: Any, b: Any) -> bool:
    # JSON equality: true != 1, 1 == 1.0, containers compared element-wise with the same rule.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def compile_schema(schema: Any) -> Check:
    if schema is True:
        return lambda x: True
    if schema is False:
        return lambda x: False
    if not isinstance(schema, dict):
        raise Unsupported(f"schema must be an object or boolean, got {type(schema).__name__}")
    checks: list[Check] = []
    unknown = set(schema) - _ANNOTATIONS - {
        "type", "const", "enum", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "oneOf", "anyOf"}
    if unknown:
        raise Unsupported(f"keywords {sorted(unknown)}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        preds = [_is_type(t) for t in types]
        checks.append(preds[0] if len(preds) == 1 else lambda x: any(p(x) for p in preds))
    if "const" in schema:
        c = schema["const"]
        checks.append(lambda x: _json_equal(x, c))
    if "enum" in schema:
        options = list(schema["enum"])
        checks.append(lambda x: any(_json_equal(x, o) for o in options))
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        num = _is_type("number")
        checks.append(lambda x: not num(x) or ((lo is None or x >= lo) and (hi is None or x <= hi)
                                               and (xlo is None or x > xlo) and (xhi is None or x < xhi)))
    if "minLength" in schema or "maxLength" in schema or "pattern" in schema:
        lo, hi = schema.get("minLength", 0), schema.get("maxLength")
        rx = re.compile(schema["pattern"]) if "pattern" in schema else None
        checks.append(lambda x: not isinstance(x, str) or (len(x) >= lo and (hi is None or len(x) <= hi) and (rx is None or rx.search(x) is not None)))
    if "items" in schema or "minItems" in schema or "maxItems" in schema:
        item = compile_schema(schema["items"]) if "items" in schema else None
        lo, hi = schema.get("minItems", 0), schema.get("maxItems")
        checks.append(lambda x: not isinstance(x, list) or (len(x) >= lo and (hi is None or len(x) <= hi) and (item is None or all(item(v) for v in x))))
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        props = {k: compile_schema(v) for k, v in schema.get("properties", {}).items()}
        required = list(schema.get("required", []))
        extra = compile_schema(schema["additionalProperties"]) if "additionalProperties" in schema else None

        def obj(x: Any) -> bool:
            if not isinstance(x, dict):
                return True
            for k in required:
                if k not in x:
                    return False
            for k, v in x.items():
                p = props.get(k)
                if p is not None:
                    if not p(v):
                        return False
                elif extra is not None and not extra(v):
                    return False
            return True
        checks.append(obj)
    if "oneOf" in schema:
        subs = [compile_schema(s) for s in schema["oneOf"]]
        checks.append(lambda x: sum(1 for s in subs if s(x)) == 1)
    if "anyOf" in schema:
        subs = [compile_schema(s) for s in schema["anyOf"]]
        checks.append(lambda x: any(s(x) for s in subs))
    if len(checks) == 1:
        return checks[0]
    every = tuple(checks)

    def all_of(x: Any) -> bool:  # a loop, not all(genexpr): this runs for every message (~3× faster)
        for c in every:
            if not c(x):
                return False
        return True
    return all_of
