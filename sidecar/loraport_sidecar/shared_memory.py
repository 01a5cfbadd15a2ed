"""Big tensors through files in the session's private /dev/shm folder (the TS side is bridge/internal/shared-memory.ts).

A descriptor with ``shm: true`` has, as its frame, the name of a file in that folder holding the tensor's bytes.
Received files are mapped copy-on-write (no copy here) and unlinked at once; sent tensors are written with one
``os.write`` (one kernel copy) and the TS side maps and unlinks them. A ZeroMQ frame of the same size costs
several copies and page faults on fresh buffers on both sides.

With ``pool_bytes`` > 0 (the session's ``shmPoolBytes``) files are recycled, as on the TS side: a fresh tmpfs file
costs a page allocation per 4 KiB on top of the copy. A received file is renamed ``u-…`` (in use; no descriptor can
name it) instead of unlinked, and ``f-…`` (free) once its mapping is garbage, unless the free files already hold
``pool_bytes``; a sender claims a free file by renaming it to its new ``t-`` name (atomic: of two claimers one wins).
"""

from __future__ import annotations

import mmap
import os
import re
import secrets
import stat
import weakref

from .protocol import ProtocolViolation

NAME = re.compile(r"t-[0-9a-f]{24}")
FREE = re.compile(r"f-[0-9a-f]{24}")
_WRITE_CHUNK = 1 << 30
# Shared and populated: one call maps every page (no fault per page), and no copy-on-write page is ever made. The
# file is this process's alone once received (renamed or unlinked), so an op writing into its input is harmless.
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


def _name_of(frame) -> str:
    raw = frame.bytes if hasattr(frame, "bytes") else bytes(frame)
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        return ""
    return name if NAME.fullmatch(name) else ""


def open_frames(descs: list, frames: list, shm_dir: str | None, rid, method, pool_bytes: int = 0) -> list:
    """``frames`` with each shared-memory frame replaced by its file's bytes (mapped); the files are unlinked, or
    kept for reuse (``pool_bytes`` > 0) once their mapping is garbage."""
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
            if pool_bytes > 0 and d["nbytes"] > 0:
                in_use = "u-" + secrets.token_hex(12)
                try:
                    os.rename(os.path.join(shm_dir, name), os.path.join(shm_dir, in_use))
                    weakref.finalize(out[i].obj, release_to_pool, shm_dir, pool_bytes, in_use)
                except OSError:
                    pass  # left to the unlink below
        return out
    finally:
        if shm_dir is not None:
            for name in names:
                if name:
                    try:
                        os.unlink(os.path.join(shm_dir, name))
                    except FileNotFoundError:
                        pass


def release_to_pool(shm_dir: str, pool_bytes: int, in_use: str) -> None:
    """A received file's mapping is garbage: back to the pool as ``f-…``, or unlinked when the pool is full."""
    path = os.path.join(shm_dir, in_use)
    try:
        pooled = 0
        with os.scandir(shm_dir) as it:
            for e in it:
                if FREE.fullmatch(e.name):
                    try:
                        pooled += e.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        pass
        if pooled + os.stat(path).st_size <= pool_bytes:
            os.rename(path, os.path.join(shm_dir, "f-" + secrets.token_hex(12)))
            return
    except OSError:
        pass
    try:
        os.unlink(path)
    except OSError:
        pass  # the session's folder is gone already


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
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)  # MAP_SHARED and writable needs O_RDWR
    except OSError as e:
        raise ProtocolViolation(f"tensor {label}: cannot open shared-memory file {os.path.basename(path)}: {e.strerror}", rid, method) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != nbytes:
            raise ProtocolViolation(f"tensor {label}: shared-memory file {os.path.basename(path)} has {st.st_size} bytes, descriptor says {nbytes}", rid, method)
        if nbytes == 0:
            return memoryview(bytearray())
        try:
            return memoryview(mmap.mmap(fd, nbytes, flags=_MAP_FLAGS, prot=mmap.PROT_READ | mmap.PROT_WRITE))
        except OSError as e:
            raise ProtocolViolation(f"tensor {label}: cannot map shared-memory file {os.path.basename(path)}: {e.strerror}", rid, method) from None
    finally:
        os.close(fd)


def spill(descs: list[dict], frames: list, shm_dir: str | None, threshold: int, pool_bytes: int = 0) -> list:
    """``frames`` with each tensor of at least ``threshold`` bytes written to a new file in ``shm_dir`` (its
    descriptor marked ``shm``) and its frame replaced by the file's name."""
    if shm_dir is None:
        return frames
    out = list(frames)
    for i, d in enumerate(descs):
        if d["nbytes"] < threshold:
            continue
        name = _write(shm_dir, frames[i], pool_bytes)
        if name is not None:
            d["shm"] = True
            out[i] = name.encode("ascii")
    return out


def _claim_free(shm_dir: str, nbytes: int, path: str) -> bool:
    """Rename a free file to ``path``: the one closest in size to ``nbytes`` (not smaller if any is); False if none."""
    try:
        with os.scandir(shm_dir) as it:
            sized = []
            for e in it:
                if FREE.fullmatch(e.name):
                    try:
                        sized.append((e.stat(follow_symlinks=False).st_size, e.name))
                    except FileNotFoundError:
                        pass  # claimed by the other side meanwhile
    except OSError:
        return False
    sized.sort(key=lambda x: (0, x[0] - nbytes) if x[0] >= nbytes else (1, nbytes - x[0]))
    for _, name in sized:
        try:
            os.rename(os.path.join(shm_dir, name), path)
            return True
        except OSError:
            continue  # the other side claimed it first
    return False


def _write(shm_dir: str, frame, pool_bytes: int = 0) -> str | None:
    """A file holding ``frame``'s bytes (a free one reused, else new), or None when it cannot be written (/dev/shm
    full): then a frame."""
    name = "t-" + secrets.token_hex(12)
    path = os.path.join(shm_dir, name)
    view = memoryview(frame).cast("B")
    reused = pool_bytes > 0 and _claim_free(shm_dir, len(view), path)
    try:
        if reused:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        if reused:
            _unlink(path)
        return None
    try:
        if reused:
            os.ftruncate(fd, len(view))
        done = 0
        while done < len(view):
            done += os.pwrite(fd, view[done:done + _WRITE_CHUNK], done)
    except OSError:
        os.close(fd)
        _unlink(path)
        return None
    os.close(fd)
    return name


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
