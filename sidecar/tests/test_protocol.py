"""The protocol layer alone: schemas load, headers validate, descriptors must match frames."""

import msgpack
import pytest

from loraport_sidecar import protocol as P
from loraport_sidecar.schemas import Schemas


@pytest.fixture(scope="module")
def schemas():
    return Schemas()


def req(**over):
    h = {"v": 1, "id": 1, "kind": "request", "method": "echo", "params": {}, "tensors": [], "deadline": None}
    h.update(over)
    return h


def test_every_method_schema_has_params_and_result(schemas):
    assert {"ping", "hello", "loadModel", "attachAdapter", "forward", "mergeAndUnload", "getTensors", "saveAdapter",
            "releaseModel"} <= set(schemas.methods)
    assert set(schemas.params) == set(schemas.results)


def test_valid_request_passes(schemas):
    assert schemas.kinds["request"].error(req(tensors=[{"name": "x", "dtype": "F32", "shape": [2, 3], "nbytes": 24}])) is None


@pytest.mark.parametrize("bad,where", [
    (req(v=2), "v"),
    (req(id=-1), "id"),
    (req(method="no spaces"), "method"),
    (req(params=[1]), "params"),
    (req(tensors=[{"dtype": "F33", "shape": [1], "nbytes": 4}]), "tensors/0/dtype"),
    (req(extra=1), "(root)"),
])
def test_invalid_request_names_the_field(schemas, bad, where):
    err = schemas.kinds["request"].error(bad)
    assert err is not None and err.startswith(where)


def test_method_params_are_validated(schemas):
    assert schemas.params["sleep"].error({"ms": 5}) is None
    assert "ms" in schemas.params["sleep"].error({"ms": "five"})
    assert schemas.params["loadModel"].error({"source": {"kind": "builtin", "family": "gpt2"}}) is None
    assert schemas.params["loadModel"].error({"source": {"kind": "builtin", "family": "nope"}}) is not None


def test_descriptor_nbytes_must_match_shape_and_frame():
    h = req(tensors=[{"dtype": "F32", "shape": [2, 3], "nbytes": 24}])
    P.check_frames(h, [b"\0" * 24], 1 << 20)
    with pytest.raises(P.ProtocolViolation, match="raw frame has 23 bytes"):
        P.check_frames(h, [b"\0" * 23], 1 << 20)
    with pytest.raises(P.ProtocolViolation, match="1 tensors but 0 raw frames"):
        P.check_frames(h, [], 1 << 20)
    with pytest.raises(P.ProtocolViolation, match="!= prod"):
        P.check_frames(req(tensors=[{"dtype": "F16", "shape": [4], "nbytes": 16}]), [b"\0" * 16], 1 << 20)
    with pytest.raises(P.ProtocolViolation, match="over the 10-byte limit"):
        P.check_frames(h, [b"\0" * 24], 10)


def test_header_must_be_a_msgpack_map():
    with pytest.raises(P.ProtocolViolation, match="not a msgpack"):
        P.unpack_header(b"\xc1garbage", 1 << 20)
    with pytest.raises(P.ProtocolViolation, match="must be a msgpack map"):
        P.unpack_header(msgpack.packb([1, 2]), 1 << 20)
    with pytest.raises(P.ProtocolViolation, match="exceeds"):
        P.unpack_header(msgpack.packb({"a": "x" * 100}), 50)


def test_error_header_carries_type_and_traceback(schemas):
    try:
        raise ValueError("boom")
    except ValueError as e:
        h = P.error_header(3, "fail", e)
    assert h["error"]["type"] == "ValueError" and h["error"]["message"] == "boom"
    assert any("raise ValueError" in ln for ln in h["error"]["traceback"])
    assert schemas.kinds["error"].error(h) is None
