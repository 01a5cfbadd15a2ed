"""Big tensors through files in the session's private /dev/shm folder (the TS side is bridge/internal/shared-memory.ts).

A descriptor with ``shm: true`` has, as its frame, the name of a file in that folder holding the tensor's bytes.
Received files are mapped copy-on-write (no copy here) and unlinked at once; sent tensors are written with one
``os.write`` (one kernel copy) and the TS side maps and unlinks them. A ZeroMQ frame of the same size costs
several copies and page faults on fresh buffers on both sides.
"""

from __future__ import annotations

import mmap
import os
import re
import secrets
import stat

from .protocol import ProtocolViolation

NAME = re.compile(r"t-[0-9a-f]{24}")
_WRITE_CHUNK = 1 << 30


def _name_of(frame) -> str:
    raw = frame.bytes if hasattr(frame, "bytes") else bytes(frame)
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        return ""
    return name if NAME.fullmatch(name) else ""


def open_frames(descs: list, frames: list, shm_dir: str | None, rid, method) -> list:
    """``frames`` with each shared-memory frame replaced by its file's bytes (mapped); the files are unlinked."""
    if len(descs) != len(frames) or not any(isinstance(d, dict) and d.get("shm") for d in descs):
        return frames  # a count mismatch is check_frames' to report
    names = [_name_of(f) if d.get("shm") else None for d, f in zip(descs, frames)]
    try:
        out = list(frames)
        for i, (d, name) in enumerate(zip(descs, names)):
            if name is None:
                continue
            label = d.get("name", f"#{i}")
            if shm_dir is None:
                raise ProtocolViolation(f"tensor {label}: sent through shared memory, which this session did not set up", rid, method)
            if not name:
                raise ProtocolViolation(f"tensor {label}: shared-memory frame is not a file name of the form t-<24 hex digits>", rid, method)
            out[i] = _map(os.path.join(shm_dir, name), d["nbytes"], label, rid, method)
        return out
    finally:
        if shm_dir is not None:
            for name in names:
                if name:
                    try:
                        os.unlink(os.path.join(shm_dir, name))
                    except FileNotFoundError:
                        pass


def discard_files(descs, frames: list, shm_dir: str | None) -> None:
    """Unlink the shared-memory files a refused message named (valid names only), so that none is left behind."""
    if shm_dir is None or not isinstance(descs, list):
        return
    for d, f in zip(descs, frames):
        name = _name_of(f) if isinstance(d, dict) and d.get("shm") else ""
        if name:
            try:
                os.unlink(os.path.join(shm_dir, name))
            except FileNotFoundError:
                pass


def _map(path: str, nbytes: int, label: str, rid, method) -> memoryview:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise ProtocolViolation(f"tensor {label}: cannot open shared-memory file {os.path.basename(path)}: {e.strerror}", rid, method) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != nbytes:
            raise ProtocolViolation(f"tensor {label}: shared-memory file {os.path.basename(path)} has {st.st_size} bytes, descriptor says {nbytes}", rid, method)
        if nbytes == 0:
            return memoryview(bytearray())
        # Private and writable: ops may write into their inputs; the file is never changed (and is unlinked anyway).
        return memoryview(mmap.mmap(fd, nbytes, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE))
    finally:
        os.close(fd)


def spill(descs: list[dict], frames: list, shm_dir: str | None, threshold: int) -> list:
    """``frames`` with each tensor of at least ``threshold`` bytes written to a new file in ``shm_dir`` (its
    descriptor marked ``shm``) and its frame replaced by the file's name."""
    if shm_dir is None:
        return frames
    out = list(frames)
    for i, d in enumerate(descs):
        if d["nbytes"] < threshold:
            continue
        name = _write(shm_dir, frames[i])
        if name is not None:
            d["shm"] = True
            out[i] = name.encode("ascii")
    return out


def _write(shm_dir: str, frame) -> str | None:
    """A new file holding ``frame``'s bytes, or None when it cannot be written (/dev/shm full): then a frame."""
    name = "t-" + secrets.token_hex(12)
    path = os.path.join(shm_dir, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        view = memoryview(frame).cast("B")
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:done + _WRITE_CHUNK])
    except OSError:
        os.close(fd)
        os.unlink(path)
        return None
    os.close(fd)
    return name
