"""The server with a real process, real ZeroMQ and real torch: ping during compute, cancel, deadlines, bad
messages, tracebacks, tensors both ways."""

import time

import msgpack
import numpy as np
import pytest

from sidecar_client import SidecarProcess


@pytest.fixture(scope="module")
def sc():
    s = SidecarProcess(maxMessageBytes=1 << 20)
    yield s
    assert s.close() == [], "socket files left behind"


def test_hello_reports_torch_and_ops(sc):
    h, _ = sc.call("hello")
    assert h["kind"] == "result", h
    assert h["result"]["protocol"] == 1 and h["result"]["torch"].startswith("2.")
    assert {"ping", "forward", "loadModel"} <= set(h["result"]["ops"])


def test_echo_round_trips_tensors(sc):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    h, frames = sc.call("echo", {}, [({"name": "x", "dtype": "F32", "shape": [3, 4], "nbytes": 48}, x.tobytes())])
    assert h["kind"] == "result" and h["tensors"] == [{"name": "x", "dtype": "F32", "shape": [3, 4], "nbytes": 48}]
    assert np.array_equal(np.frombuffer(frames[0], np.float32).reshape(3, 4), x)


def test_ping_is_answered_while_the_compute_thread_is_busy(sc):
    slow = sc.send("sleep", {"ms": 1500})
    ping = sc.send("ping")
    # The first final reply is the ping's: it did not wait behind the compute thread.
    h, _ = sc.recv(5000)
    while h["kind"] == "progress":
        h, _ = sc.recv(5000)
    assert h["id"] == ping and h["kind"] == "result"
    h, _ = sc.final(slow)
    assert h["kind"] == "result"


def test_cancel_stops_a_running_call(sc):
    rid = sc.send("sleep", {"ms": 20000})
    time.sleep(0.2)
    sc.sock.send_multipart([msgpack.packb({"v": 1, "id": rid, "kind": "cancel"})])
    t0 = time.monotonic()
    h, _ = sc.final(rid, 5000)
    assert h["kind"] == "error" and h["error"]["type"] == "Cancelled" and time.monotonic() - t0 < 1


def test_deadline_stops_a_call(sc):
    rid = sc.send("sleep", {"ms": 20000}, deadline=time.time() * 1000 + 300)
    h, _ = sc.final(rid, 5000)
    assert h["error"]["type"] == "DeadlineExceeded"


def test_python_exception_arrives_with_traceback(sc):
    h, _ = sc.call("fail", {"type": "KeyError", "message": "missing thing"})
    assert h["error"]["type"] == "KeyError" and "missing thing" in h["error"]["message"]
    assert any("diagnostics.py" in ln for ln in h["error"]["traceback"])


@pytest.mark.parametrize("frames,match", [
    ([b"\xc1\xc1"], "not a msgpack"),
    ([msgpack.packb({"v": 1, "id": 5, "kind": "request", "method": "echo", "params": {}, "tensors": [], "bogus": 1})], "Additional properties"),
    ([msgpack.packb({"v": 1, "id": 6, "kind": "request", "method": "nosuch", "params": {}, "tensors": []})], "unknown method"),
    ([msgpack.packb({"v": 1, "id": 7, "kind": "request", "method": "sleep", "params": {"ms": "x"}, "tensors": []})], "sleep params: ms"),
    ([msgpack.packb({"v": 1, "id": 8, "kind": "result", "result": {}, "tensors": []})], "kind"),
    ([msgpack.packb({"v": 1, "id": 9, "kind": "request", "method": "echo", "params": {}, "tensors": [{"dtype": "U8", "shape": [786432], "nbytes": 786432}] * 2}),
      b"\0" * 786432, b"\0" * 786432], "over the 1048576-byte limit"),
])
def test_bad_messages_get_protocol_errors_and_the_sidecar_stays_up(sc, frames, match):
    sc.sock.send_multipart(frames)
    h, _ = sc.recv(5000)
    assert h["kind"] == "error" and h["error"]["type"] == "Protocol" and match in h["error"]["message"], h
    h, _ = sc.call("ping")
    assert h["result"]["pong"] is True


def test_unknown_handle_is_a_remote_key_error(sc):
    h, _ = sc.call("forward", {"handle": "m999"})
    assert h["kind"] == "error" and "unknown model handle" in h["error"]["message"]


def test_bulk_socket_backpressure_keeps_queued_bytes_bounded():
    """With the compute thread busy, the sidecar stops reading the bulk socket once maxQueuedBytes are waiting;
    ping still answers on the control socket, and every request is served once the compute thread frees up."""
    import zmq
    s = SidecarProcess(maxQueuedBytes=1 << 20)
    bulk = s.ctx.socket(zmq.DEALER)
    try:
        # The TS client's identities: control "C" + token, bulk "B" + token.
        s.sock.close(0)
        s.sock = s.ctx.socket(zmq.DEALER)
        s.sock.setsockopt(zmq.IDENTITY, b"Ctok")
        s.sock.setsockopt(zmq.LINGER, 0)
        s.sock.connect(s.endpoints["control"])
        bulk.setsockopt(zmq.IDENTITY, b"Btok")
        bulk.setsockopt(zmq.LINGER, 0)
        bulk.connect(s.endpoints["bulk"])
        s.call("hello")
        busy = s.send("sleep", {"ms": 1500})
        ids = []
        for _ in range(4):
            rid = s.next_id
            s.next_id += 1
            ids.append(rid)
            desc = {"dtype": "U8", "shape": [1 << 20], "nbytes": 1 << 20}
            bulk.send_multipart([msgpack.packb({"v": 1, "id": rid, "kind": "request", "method": "echo", "params": {"echo": False},
                                                "tensors": [desc], "deadline": None}), b"\0" * (1 << 20)])
        time.sleep(0.5)
        h, _ = s.call("ping")
        assert h["result"]["queuedBytes"] <= 1 << 20, h["result"]
        assert s.final(busy)[0]["kind"] == "result"
        for rid in ids:
            h, _ = s.final(rid)
            assert h["kind"] == "result" and h["result"]["nbytes"] == 1 << 20
        h, _ = s.call("ping")
        assert h["result"]["queuedBytes"] == 0
    finally:
        bulk.close(0)
        assert s.close() == []
