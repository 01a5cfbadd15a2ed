"""The compiled fast check must agree with jsonschema on every schema in schemas/ (valid and invalid documents)."""

import copy
import itertools

import pytest
from jsonschema import Draft202012Validator

from loraport_sidecar.fastcheck import Unsupported, compile_schema
from loraport_sidecar.schemas import Schemas

SCHEMAS = Schemas()
ALL = [(f"kind:{k}", c) for k, c in SCHEMAS.kinds.items()] + [(f"params:{k}", c) for k, c in SCHEMAS.params.items()] + \
      [(f"result:{k}", c) for k, c in SCHEMAS.results.items()]

# Values that trip naive checks: bool vs int, integral floats, nulls, wrong containers.
ODD = [None, True, False, 0, 1, -1, 1.0, 1.5, 2**53, "", "x", "F32", "m1", [], [1], {}, {"a": 1}]

REQUEST = {"v": 1, "id": 5, "kind": "request", "method": "echo", "params": {}, "tensors": [{"name": "x", "dtype": "U8", "shape": [4], "nbytes": 4}], "deadline": None}
SAMPLES = {
    "kind:request": REQUEST,
    "kind:cancel": {"v": 1, "id": 5, "kind": "cancel"},
    "kind:error": {"v": 1, "id": None, "kind": "error", "method": None, "error": {"type": "Protocol", "message": "m", "traceback": [], "cause": None}},
    "kind:progress": {"v": 1, "id": 3, "kind": "progress", "progress": {"phase": "p", "done": 1, "total": None, "unit": "ms", "message": None}},
    "params:loadModel": {"source": {"kind": "builtin", "family": "gpt2", "kwargs": {"n_layer": 1}}, "dtype": "F32", "device": "cuda:0"},
    "params:attachAdapter": {"handle": "m1", "source": {"kind": "loralib", "path": "/x.pt", "r": 4, "alpha": 32, "enableLora": [True, False, True]}},
    "params:sleep": {"ms": 5},
}


def mutations(doc):
    """The document itself, and each leaf/field replaced by odd values, removed, or an extra field added."""
    yield doc
    if isinstance(doc, dict):
        for k in doc:
            for odd in ODD:
                yield {**doc, k: odd}
            yield {kk: vv for kk, vv in doc.items() if kk != k}
            for sub in itertools.islice(mutations(doc[k]), 40):
                yield {**doc, k: sub}
        yield {**doc, "zzz_extra": 1}
    elif isinstance(doc, list):
        for i in range(len(doc)):
            for sub in itertools.islice(mutations(doc[i]), 40):
                yield doc[:i] + [sub] + doc[i + 1:]
        yield doc + doc


@pytest.mark.parametrize("name,checker", ALL, ids=[n for n, _ in ALL])
def test_fast_check_agrees_with_jsonschema(name, checker):
    if checker.fast is None:
        pytest.skip(f"{name}: uses keywords the fast check does not implement (jsonschema alone validates it)")
    docs = list(mutations(copy.deepcopy(SAMPLES.get(name, {})))) + ODD
    for doc in docs:
        assert checker.fast(doc) == checker.validator.is_valid(doc), (name, doc)


def test_unknown_keywords_are_refused_not_ignored():
    with pytest.raises(Unsupported):
        compile_schema({"type": "object", "patternProperties": {"^x": {}}})


def test_fast_check_is_used_for_the_protocol_messages():
    assert all(c.fast is not None for c in SCHEMAS.kinds.values())
    assert Draft202012Validator(SCHEMAS.kinds["request"].schema).is_valid(REQUEST)
