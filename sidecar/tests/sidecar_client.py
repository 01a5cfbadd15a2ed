"""A minimal Python DEALER client for the sidecar's own tests (the real client is the TS SDK)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

# Limits stop a hang, never measure speed: scaled like the TS tests' (sdk/test/helpers/timeouts.ts), so a loaded
# 2-core machine (an export through the sidecar took 110 s at load 16) does not fail a call that is only slow.
try:
    TIME_SCALE = max(1.0, float(os.environ.get("LORAPORT_TEST_TIME_SCALE", "3")))
except ValueError:
    TIME_SCALE = 3.0


class SidecarProcess:
    def __init__(self, **config):
        self.dir = tempfile.mkdtemp(prefix="lps-")
        os.chmod(self.dir, 0o700)
        cfg = {"control": f"ipc://{self.dir}/c", "bulk": f"ipc://{self.dir}/b", "validateResults": True, **config}
        self.proc = subprocess.Popen([sys.executable, "-m", "loraport_sidecar"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.proc.stdin.write((json.dumps(cfg) + "\n").encode())
        self.proc.stdin.flush()
        ready = json.loads(self.proc.stdout.readline())
        assert ready["ready"]
        self.endpoints = ready["endpoints"]
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.endpoints["control"])
        self.next_id = 1

    def send(self, method, params=None, tensors=(), deadline=None, raw_header=None):
        rid = self.next_id
        self.next_id += 1
        header = raw_header if raw_header is not None else msgpack.packb(
            {"v": 1, "id": rid, "kind": "request", "method": method, "params": params or {},
             "tensors": [d for d, _ in tensors], "deadline": deadline})
        self.sock.send_multipart([header, *[b for _, b in tensors]])
        return rid

    def recv(self, timeout_ms=None):
        if not self.sock.poll(int(timeout_ms if timeout_ms is not None else 30000 * TIME_SCALE)):
            raise TimeoutError("no reply from the sidecar")
        header, *frames = self.sock.recv_multipart()
        return msgpack.unpackb(header), frames

    def final(self, rid, timeout_ms=None):
        """The result or error for request rid, skipping progress events."""
        timeout_ms = timeout_ms if timeout_ms is not None else 60000 * TIME_SCALE
        t0 = time.monotonic()
        while True:
            h, frames = self.recv(max(1, int(timeout_ms - (time.monotonic() - t0) * 1000)))
            if h.get("id") == rid and h["kind"] in ("result", "error"):
                return h, frames

    def call(self, method, params=None, tensors=()):
        return self.final(self.send(method, params, tensors))

    def close(self):
        self.sock.close(0)
        self.ctx.term()
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.stdout.close()
            self.proc.stderr.close()
        # The sidecar removes its socket files, and the folder when nothing else is in it.
        leftovers = os.listdir(self.dir) if os.path.isdir(self.dir) else []
        if os.path.isdir(self.dir) and not leftovers:
            os.rmdir(self.dir)
        return leftovers
