"""Server mechanics: an IO thread owning the ZeroMQ sockets and one compute thread running ops.

The IO thread answers ``ping``, records ``cancel`` and validates every message while PyTorch computes on the
compute thread; replies from the compute thread reach the IO thread over an inproc socket (ZeroMQ sockets are
not thread-safe). Two ROUTER sockets: ``control`` for small messages, ``bulk`` for messages whose tensors are
large, so a 256 MiB transfer never queues a ping or a cancel behind it.
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from typing import Any

import zmq

from . import protocol as P
from .handles import HandleTable
from .registry import OPS, OpContext
from .schemas import Schemas
from .shared_memory import discard_files, open_frames, spill

log = logging.getLogger("loraport_sidecar")

_OUT = "inproc://loraport-out"
_ROUTE_CONTROL, _ROUTE_BULK = b"c", b"b"


@dataclass
class ServerConfig:
    control: str  # endpoint to bind: ipc://<private dir>/c or tcp://127.0.0.1:0
    bulk: str | None = None
    curve: dict | None = None  # {"serverSecret", "serverPublic", "clientPublic"} (Z85)
    max_message_bytes: int = 8 << 30
    max_header_bytes: int = 4 << 20
    bulk_threshold: int = 1 << 20
    validate_results: bool = False
    # Tensor bytes waiting for the compute thread above which the bulk socket is not read (backpressure: libzmq
    # then holds a few messages and the client's sends wait). The control socket is always read.
    max_queued_bytes: int = 2 << 30
    # The session's private shared-memory folder (created by the TS side) and the tensor size from which replies
    # go through it; None: frames only.
    shm_dir: str | None = None
    shm_threshold: int = 16 << 20
    # Idle shared-memory files kept for reuse, in bytes (shared_memory.py); 0: every file is unlinked once read.
    shm_pool_bytes: int = 0

    @classmethod
    def from_json(cls, doc: dict) -> "ServerConfig":
        return cls(control=doc["control"], bulk=doc.get("bulk"), curve=doc.get("curve"),
                   max_message_bytes=int(doc.get("maxMessageBytes", 8 << 30)),
                   max_header_bytes=int(doc.get("maxHeaderBytes", 4 << 20)),
                   bulk_threshold=int(doc.get("bulkThreshold", 1 << 20)),
                   validate_results=bool(doc.get("validateResults", False)),
                   max_queued_bytes=int(doc.get("maxQueuedBytes", 2 << 30)),
                   shm_dir=doc.get("shmDir"), shm_threshold=int(doc.get("shmThreshold", 16 << 20)),
                   shm_pool_bytes=int(doc.get("shmPoolBytes", 0)))


class Server:
    def __init__(self, config: ServerConfig, schemas: Schemas | None = None):
        self.config = config
        self.schemas = schemas or Schemas()
        self.models = HandleTable()
        self.zctx = zmq.Context()
        self.stop = threading.Event()
        self._io_thread: threading.Thread | None = None
        self.ops_ready = threading.Event()
        self.ops_error: BaseException | None = None
        self._queue: queue.Queue[P.Request] = queue.Queue()
        self._queued_bytes = 0
        self._queued_lock = threading.Lock()
        self._cancelled: set[int] = set()
        self._bulk_peers: dict[bytes, bytes] = {}  # control routing id → bulk routing id
        self._auth = None
        self._sockets: list[zmq.Socket] = []
        self._ipc_paths: list[str] = []
        self.endpoints: dict[str, str] = {}

    # ---- setup -----------------------------------------------------------------------------------
    def _router(self, endpoint: str, hwm: int) -> tuple[zmq.Socket, str]:
        s = self.zctx.socket(zmq.ROUTER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unroutable replies raise instead of vanishing
        # A hard per-frame cap: a bad length prefix cannot make libzmq allocate gigabytes. The soft cap
        # (an answered ProtocolError) is checked per message below.
        s.setsockopt(zmq.MAXMSGSIZE, self.config.max_message_bytes + self.config.max_header_bytes)
        s.setsockopt(zmq.SNDHWM, hwm)
        s.setsockopt(zmq.RCVHWM, hwm)
        if self.config.curve:
            s.curve_server = True
            s.curve_secretkey = self.config.curve["serverSecret"].encode()
            s.curve_publickey = self.config.curve["serverPublic"].encode()
        if endpoint.startswith("tcp://"):
            host = endpoint[len("tcp://"):].rsplit(":", 1)[0]
            if host not in ("127.0.0.1", "[::1]", "localhost"):
                raise ValueError(f"refusing to bind {endpoint}: tcp is loopback-only")
            if not self.config.curve:
                raise ValueError(f"refusing to bind {endpoint} without CURVE keys")
        s.bind(endpoint)
        actual = s.getsockopt_string(zmq.LAST_ENDPOINT)
        if actual.startswith("ipc://"):
            self._ipc_paths.append(actual[len("ipc://"):])
        self._sockets.append(s)
        return s, actual

    def bind(self) -> dict[str, str]:
        if self.config.curve:
            from zmq.auth.thread import ThreadAuthenticator
            client_key = self.config.curve["clientPublic"].encode()

            class _OnlyOurClient:
                def callback(self, domain: str, key: bytes) -> bool:
                    return key == client_key

            self._auth = ThreadAuthenticator(self.zctx)
            self._auth.start()
            self._auth.configure_curve_callback(domain="*", credentials_provider=_OnlyOurClient())
        self.control, self.endpoints["control"] = self._router(self.config.control, 100_000)
        self.bulk = None
        if self.config.bulk:
            self.bulk, self.endpoints["bulk"] = self._router(self.config.bulk, 16)
        self.out = self.zctx.socket(zmq.PULL)
        self.out.bind(_OUT)
        self._sockets.append(self.out)
        return self.endpoints

    def start(self) -> None:
        threading.Thread(target=self._compute_loop, name="compute", daemon=True).start()
        self._io_thread = threading.Thread(target=self._io_loop, name="io", daemon=True)
        self._io_thread.start()

    def close(self) -> None:
        self.stop.set()
        # The sockets belong to the IO thread (zmq sockets are not thread-safe): closing one while that thread is
        # still inside poll() can hang the process, so wait for it to leave its loop (poll times out every 100 ms).
        io_thread = self._io_thread
        if io_thread is not None and io_thread is not threading.current_thread():
            io_thread.join(timeout=2.0)
            if io_thread.is_alive():
                self._remove_ipc_files()
                self._remove_shm_dir()
                return  # leave the sockets to the process exit rather than race the IO thread
        for s in self._sockets:
            try:
                s.close(linger=0)
            except zmq.ZMQError:
                pass
        if self._auth is not None:
            self._auth.stop()
        self._remove_ipc_files()
        self._remove_shm_dir()

    def _remove_shm_dir(self) -> None:
        if self.config.shm_dir:
            shutil.rmtree(self.config.shm_dir, ignore_errors=True)  # the client's folder; its parent may be dead

    def _remove_ipc_files(self) -> None:
        for path in self._ipc_paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        for folder in {os.path.dirname(p) for p in self._ipc_paths}:
            try:
                os.rmdir(folder)  # the client's private folder, if nothing else is in it (its parent may be dead)
            except OSError:
                pass

    @property
    def limits(self) -> dict:
        return {"maxMessageBytes": self.config.max_message_bytes, "maxHeaderBytes": self.config.max_header_bytes}

    # ---- IO thread -------------------------------------------------------------------------------
    def _io_loop(self) -> None:
        poller = zmq.Poller()
        socks = [s for s in (self.control, self.bulk, self.out) if s is not None]
        for s in socks:
            poller.register(s, zmq.POLLIN)
        bulk_paused = False
        while not self.stop.is_set():
            if self.bulk is not None:
                full = self._queued_bytes >= self.config.max_queued_bytes
                if full != bulk_paused:
                    poller.modify(self.bulk, 0 if full else zmq.POLLIN)
                    bulk_paused = full
            try:
                ready = dict(poller.poll(100))
            except zmq.ZMQError:
                break
            for s in socks:
                if s not in ready:
                    continue
                for _ in range(256):  # drain, but let the other sockets have a turn
                    if s is self.bulk and self._queued_bytes >= self.config.max_queued_bytes:
                        break
                    try:
                        frames = s.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    except zmq.ZMQError:
                        if self.stop.is_set():
                            return
                        raise
                    try:
                        if s is self.out:
                            self._forward_out(frames)
                        else:
                            self._incoming(frames, bulk=s is self.bulk)
                    except Exception:  # the IO thread must survive anything a peer sends
                        log.exception("IO thread: unexpected error")
                    # Asking is cheaper than a recv that raises zmq.Again (an exception per wake-up, per socket).
                    try:
                        if not s.get(zmq.EVENTS) & zmq.POLLIN:
                            break
                    except zmq.ZMQError:
                        break

    def _send(self, ident: bytes, header: dict, frames: list | None = None, *, bulk: bool = False) -> None:
        sock = self.control
        if bulk and self.bulk is not None and ident in self._bulk_peers:
            sock, ident = self.bulk, self._bulk_peers[ident]
        try:
            # Replies without tensors are small: copying them is cheaper than zero-copy's bookkeeping.
            sock.send_multipart([ident, P.pack(header), *(frames or [])], copy=not frames)
        except zmq.ZMQError as e:  # peer gone (ROUTER_MANDATORY): nobody to tell
            log.warning("reply to a gone peer dropped: %s", e)

    def _forward_out(self, frames: list) -> None:
        ident, route, header, *tensors = frames
        bulk = route.bytes == _ROUTE_BULK
        sock, dest = self.control, ident.bytes
        if bulk and self.bulk is not None and dest in self._bulk_peers:
            sock, dest = self.bulk, self._bulk_peers[dest]
        try:
            sock.send_multipart([dest, header, *tensors], copy=False)
        except zmq.ZMQError as e:
            log.warning("reply to a gone peer dropped: %s", e)

    def _reply_error(self, ident: bytes, exc: BaseException, rid: Any = None, method: Any = None) -> None:
        rid = rid if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid < 2**53 else None
        method = method if isinstance(method, str) else None
        self._send(ident, P.error_header(rid, method, exc))

    def _incoming(self, frames: list, *, bulk: bool) -> None:
        ident = frames[0].bytes
        if bulk:
            # The bulk dealer's routing id is "B" + the control dealer's token (set by the TS client); replies
            # are addressed to the control dealer and switched to the bulk socket by size.
            if not ident.startswith(b"B"):
                try:
                    self.bulk.send_multipart([ident, P.pack(P.error_header(None, None, P.ProtocolViolation(
                        "bulk socket clients need the routing id 'B' + the token of their control socket's 'C' + token")))])
                except zmq.ZMQError:
                    pass
                return
            self._bulk_peers[b"C" + ident[1:]] = ident
            ident = b"C" + ident[1:]
        if len(frames) < 2:
            self._reply_error(ident, P.ProtocolViolation("message has no header frame"))
            return
        header: Any = None
        try:
            header = P.unpack_header(frames[1].buffer, self.config.max_header_bytes)
            kind = header.get("kind")
            validator = self.schemas.kinds.get(kind) if kind in ("request", "cancel", "event") else None
            if validator is None:
                raise P.ProtocolViolation(f"kind: expected request, cancel or event from the client, got {kind!r}", header.get("id"))
            err = validator.error(header)
            if err:
                raise P.ProtocolViolation(f"{kind} header: {err}", header.get("id"), header.get("method"))
            if kind == "cancel":
                self._cancel(header["id"])
                return
            if kind == "event":
                return  # the bulk hello, nothing else yet
            self._request(ident, header, frames[2:])
        except P.ProtocolViolation as e:
            rid = e.request_id if e.request_id is not None else (header.get("id") if isinstance(header, dict) else None)
            if isinstance(header, dict):
                discard_files(header.get("tensors"), frames[2:], self.config.shm_dir)  # refused before they were read
            self._reply_error(ident, e, rid, e.method)

    def _cancel(self, rid: int) -> None:
        self._cancelled.add(rid)
        if len(self._cancelled) > 100_000:  # cancels for requests long gone: forget the oldest ids
            for old in sorted(self._cancelled)[:50_000]:
                self._cancelled.discard(old)

    def _request(self, ident: bytes, header: dict, tensor_frames: list) -> None:
        rid, method = header["id"], header["method"]
        if header["v"] != P.PROTOCOL_VERSION:
            raise P.ProtocolViolation(f"protocol version {header['v']} != {P.PROTOCOL_VERSION}", rid, method)
        tensor_frames = open_frames(header["tensors"], tensor_frames, self.config.shm_dir, rid, method, self.config.shm_pool_bytes)
        P.check_frames(header, tensor_frames, self.config.max_message_bytes)
        pv = self.schemas.params.get(method)
        if pv is None:
            raise P.ProtocolViolation(f"method: unknown method {method!r}; known: {', '.join(self.schemas.methods)}", rid, method)
        err = pv.error(header["params"])
        if err:
            raise P.ProtocolViolation(f"{method} params: {err}", rid, method)
        if method == "ping":  # answered here, even while the compute thread is busy
            self._send(ident, P.result_header(rid, method, {"pong": True, "time": time.time() * 1000, "queuedBytes": self._queued_bytes,
                                                            "queuedRequests": self._queue.qsize()}, []))
            return
        req = P.Request(rid, method, header["params"], header["tensors"], tensor_frames, header.get("deadline"), ident)
        req.nbytes = sum(d["nbytes"] for d in header["tensors"])
        with self._queued_lock:
            self._queued_bytes += req.nbytes
        self._queue.put(req)

    # ---- compute thread --------------------------------------------------------------------------
    def _load_ops(self) -> None:
        import torch  # noqa: F401  (slow: imported here so the READY line goes out first)

        from . import ops
        for mod in pkgutil.iter_modules(ops.__path__):
            importlib.import_module(f"{ops.__name__}.{mod.name}")

    def _compute_loop(self) -> None:
        push = self.zctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(_OUT)
        try:
            self._load_ops()
        except BaseException as e:  # reported on every call instead of crashing silently
            self.ops_error = e
            log.exception("loading ops failed")
        self.ops_ready.set()
        while not self.stop.is_set():
            try:
                req = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._run(push, req)
            finally:
                self._release_queued(req)  # (a no-op when _run did it before its reply)
                self._cancelled.discard(req.id)
                # Drop the request now, not when the next one arrives: its mapped inputs go back to the pool.
                req = None
        push.close(linger=0)

    def _release_queued(self, req: P.Request) -> None:
        """The request's tensor bytes no longer wait for the compute thread (backpressure accounting); idempotent."""
        with self._queued_lock:
            self._queued_bytes -= req.nbytes
        req.nbytes = 0

    def _run(self, push: zmq.Socket, req: P.Request) -> None:
        def send(header: dict, frames: list, route: bytes = _ROUTE_CONTROL) -> None:
            push.send_multipart([req.ident, route, P.pack(header), *frames], copy=False)

        def progress(phase, done, total, unit, message) -> None:
            send(P.progress_header(req.id, phase, done, total, unit, message), [])

        ctx = OpContext(req.id, req.method, [d.get("name") for d in req.descriptors], self.models,
                        lambda: req.id in self._cancelled, progress, req.deadline, self.limits)
        try:
            if self.ops_error is not None:
                raise RuntimeError(f"the sidecar's ops failed to load: {self.ops_error!r}") from self.ops_error
            handler = OPS.get(req.method)
            if handler is None:
                raise P.ProtocolViolation(f"method {req.method!r} has a schema but no handler in loraport_sidecar.ops", req.id, req.method)
            ctx.check_cancelled()
            from .tensors import frame_to_tensor, pack_tensors
            tensors = [frame_to_tensor(d, f) for d, f in zip(req.descriptors, req.frames)]
            result, out = handler(ctx, req.params, tensors)
            descs, frames = pack_tensors(out)
            frames = spill(descs, frames, self.config.shm_dir, self.config.shm_threshold, self.config.shm_pool_bytes)
            header = P.result_header(req.id, req.method, result, descs)
            if self.config.validate_results:
                err = self.schemas.results[req.method].error(result)
                if err:
                    raise AssertionError(f"{req.method} result breaks its schema: {err}")
            big = sum(d["nbytes"] for d in descs) >= self.config.bulk_threshold
            # Inputs let go before the reply leaves: a mapped input's file is back in the shared-memory pool by the
            # time the client sends its next tensor (the reply's own frames keep alive what they still need).
            tensors = out = req.frames = None
            # Released before the reply leaves, so that a client's next ping never counts this request's bytes.
            self._release_queued(req)
            send(header, frames, _ROUTE_BULK if big else _ROUTE_CONTROL)
        except BaseException as e:  # every request gets exactly one final reply
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            self._release_queued(req)
            send(P.error_header(req.id, req.method, e), [])
