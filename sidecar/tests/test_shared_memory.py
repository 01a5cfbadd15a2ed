"""Tensors through the session's shared-memory folder (shm descriptors), against a real sidecar process."""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
import pytest

from sidecar_client import SidecarProcess

pytestmark = pytest.mark.skipif(not (os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK)), reason="no writable /dev/shm")


@pytest.fixture()
def shm_sidecar():
    folder = tempfile.mkdtemp(prefix="loraport-test-", dir="/dev/shm")
    os.chmod(folder, 0o700)
    sc = SidecarProcess(shmDir=folder, shmThreshold=1 << 20)
    yield sc, folder
    sc.close()
    shutil.rmtree(folder, ignore_errors=True)


def test_big_tensors_both_ways_through_files_that_are_unlinked(shm_sidecar):
    sc, folder = shm_sidecar
    values = np.arange(400_000, dtype=np.float32) * 0.25
    name = "t-" + "ab" * 12
    with open(os.path.join(folder, name), "wb") as f:
        f.write(values.tobytes())
    small = np.arange(5, dtype=np.int64)
    h, frames = sc.call("echo", {}, [({"dtype": "F32", "shape": [400_000], "nbytes": values.nbytes, "shm": True}, name.encode()),
                                     ({"dtype": "I64", "shape": [5], "nbytes": 40}, small.tobytes())])
    assert h["kind"] == "result", h
    assert not os.path.exists(os.path.join(folder, name))  # read and unlinked
    big_desc, small_desc = h["tensors"]
    assert big_desc.get("shm") is True and "shm" not in small_desc  # 1.6 MB over the 1 MiB threshold; 40 B a frame
    back = os.path.join(folder, bytes(frames[0]).decode())
    assert np.array_equal(np.fromfile(back, dtype=np.float32), values)
    assert np.array_equal(np.frombuffer(bytes(frames[1]), dtype=np.int64), small)
    os.unlink(back)
    assert os.listdir(folder) == []


@pytest.mark.parametrize("frame,nbytes,expect", [
    (b"../../etc/passwd", 8, "not a file name of the form t-<24 hex digits>"),
    (b"t-" + b"f" * 24, 8, "cannot open shared-memory file"),
    (b"t-" + b"c" * 24, 8, "has 10 bytes, descriptor says 8"),
])
def test_bad_shared_memory_frames_are_protocol_errors(shm_sidecar, frame, nbytes, expect):
    sc, folder = shm_sidecar
    with open(os.path.join(folder, "t-" + "c" * 24), "wb") as f:
        f.write(b"\0" * 10)
    h, _ = sc.call("echo", {}, [({"dtype": "U8", "shape": [nbytes], "nbytes": nbytes, "shm": True}, frame)])
    assert h["kind"] == "error" and h["error"]["type"] == "Protocol", h
    assert expect in h["error"]["message"]
    assert not os.path.exists(os.path.join(folder, "t-" + "c" * 24)) or frame != b"t-" + b"c" * 24
    h, _ = sc.call("ping")
    assert h["kind"] == "result"


def test_a_session_without_shared_memory_refuses_shm_descriptors():
    sc = SidecarProcess()
    try:
        h, _ = sc.call("echo", {}, [({"dtype": "U8", "shape": [4], "nbytes": 4, "shm": True}, b"t-" + b"0" * 24)])
        assert h["kind"] == "error" and "did not set up" in h["error"]["message"]
    finally:
        sc.close()


def test_a_message_refused_before_its_tensors_are_read_leaves_no_file(shm_sidecar):
    sc, folder = shm_sidecar
    name = "t-" + "de" * 12
    with open(os.path.join(folder, name), "wb") as f:
        f.write(b"\0" * 8)
    # A header the request schema refuses (an unknown key): refused before the tensors are even looked at.
    import msgpack
    header = msgpack.packb({"v": 1, "id": 77, "kind": "request", "method": "echo", "params": {}, "bogus": 1,
                            "tensors": [{"dtype": "U8", "shape": [8], "nbytes": 8, "shm": True}], "deadline": None})
    sc.send("echo", raw_header=header, tensors=[(None, name.encode())])
    h, _ = sc.final(77)
    assert h["kind"] == "error" and h["error"]["type"] == "Protocol", h
    assert not os.path.exists(os.path.join(folder, name))
