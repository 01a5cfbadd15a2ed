"""A Python start shared by the test run: this process imports torch, transformers, PEFT and onnx once (5-8 s of CPU
per interpreter start) and forks a child for every test script, which then runs exactly as `python -c CODE ARGS`,
`python -m MODULE ARGS` or `python SCRIPT ARGS` would, with the caller's stdin/stdout/stderr, working folder and
environment. The libraries are the same real ones; only their import is shared. Nothing runs in this process but the
imports (no torch op, no thread pool started), so forking it is safe; onnxruntime is not preloaded (it starts threads).

usage: python_preload.py SOCKET  (sdk/test/global-setup.ts starts it; python_preload_client.py is the caller).
Protocol on the unix socket, per connection: a 4-byte big-endian length + JSON {argv, env, cwd} with the caller's fds
0, 1, 2 attached (SCM_RIGHTS); the reply is 4 bytes, the exit status (128 + signal when killed). A caller that goes
away first gets its child killed.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import struct
import sys

START_ENV = dict(os.environ)  # before the imports, some of which add to it (torch: TORCHINDUCTOR_CACHE_DIR)

import numpy  # noqa: F401  (everything below imports it; its BLAS pool is fork-aware)
import torch  # noqa: F401
import transformers  # noqa: F401
import peft  # noqa: F401
import onnx  # noqa: F401
import onnxscript  # noqa: F401
import torch.onnx  # noqa: F401
import safetensors.torch  # noqa: F401
from transformers import GPT2LMHeadModel, LlamaForCausalLM, RobertaForSequenceClassification  # noqa: F401  (lazy modules)


def run_child(request: dict, fds: list[int]) -> None:
    """In the forked child: become the requested interpreter run. Never returns."""
    code = 1
    try:
        os.setpgid(0, 0)
        signal.set_wakeup_fd(-1)
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(request["cwd"])
        added = {k: v for k, v in os.environ.items() if k not in START_ENV}  # as the imports would add them
        os.environ.clear()
        os.environ.update({**request["env"], **{k: v for k, v in added.items() if k not in request["env"]}})
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        argv = request["argv"]
        import runpy
        import types

        if argv[0] == "-c":
            sys.argv = ["-c", *argv[2:]]
            sys.path[0] = ""
            main = types.ModuleType("__main__")
            sys.modules["__main__"] = main
            exec(compile(argv[1], "<string>", "exec"), main.__dict__)
        elif argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            sys.path[0] = request["cwd"]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
        code = 0
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException as e:
        import traceback

        # Without this function's own frame, as python itself prints it.
        traceback.print_exception(type(e), e, e.__traceback__.tb_next if e.__traceback__ else None)
        code = 1
    try:
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code & 0xFF)


def recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    head, fds, _, _ = socket.recv_fds(conn, 4, 3)
    if len(head) < 4:
        raise EOFError
    (n,) = struct.unpack(">I", head)
    body = b""
    while len(body) < n:
        chunk = conn.recv(n - len(body))
        if not chunk:
            raise EOFError
        body += chunk
    return json.loads(body), list(fds)


# What the preloaded imports read from the environment when they ran: a caller whose values differ (another
# HF_HOME, PYTHONWARNINGS, thread counts...) gets a fresh interpreter instead (python_preload_client.py checks).
ENV_PREFIXES = ("HF_", "HUGGINGFACE", "TRANSFORMERS", "TORCH", "PYTORCH", "PEFT", "OMP_", "MKL_", "OPENBLAS", "CUDA",
                "PYTHON", "LD_", "TOKENIZERS", "XDG_", "ONNX", "ORT_", "HOME", "TMPDIR", "KMP_", "NUMEXPR", "VIRTUAL_ENV")


def import_env(env) -> dict:
    return {k: v for k, v in env.items() if k.startswith(ENV_PREFIXES)}


def serve(path: str) -> None:
    with open(f"{path}.env.json.tmp", "w") as f:
        json.dump(import_env(START_ENV), f)
    os.replace(f"{path}.env.json.tmp", f"{path}.env.json")
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}  # pid → its caller's connection
    # SIGCHLD wakes the select loop through a self-pipe.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel.register(wake_r, selectors.EVENT_READ)
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    print("ready", flush=True)
    while not stop and os.getppid() == parent:  # the test run ended without stopping us: exit too
        for key, _ in sel.select(timeout=1.0):
            if key.fileobj is listener:
                conn, _ = listener.accept()
                try:
                    request, fds = recv_request(conn)
                except (EOFError, OSError, ValueError):
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    sel.close()
                    listener.close()
                    conn.close()
                    os.close(wake_r)
                    os.close(wake_w)
                    for c in children.values():
                        c.close()
                    run_child(request, fds)
                try:
                    os.setpgid(pid, pid)  # also here: a kill right after the fork must reach its group
                except OSError:
                    pass  # the child did it first, or has exited already
                for fd in fds:
                    os.close(fd)
                children[pid] = conn
                sel.register(conn, selectors.EVENT_READ, pid)
            elif key.fileobj == wake_r:
                os.read(wake_r, 4096)
            else:
                # The caller hung up (it sends nothing after the request): kill its child's process group.
                pid = key.data
                sel.unregister(key.fileobj)
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = children.pop(pid, None)
            if conn is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            try:
                sel.unregister(conn)
            except KeyError:
                pass  # its caller hung up already
            try:
                conn.sendall(struct.pack(">i", code if code >= 0 else 128 - code))
            except OSError:
                pass
            conn.close()
    for pid in list(children):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


if __name__ == "__main__":
    serve(sys.argv[1])
    os._exit(0)  # nothing to clean up; the libraries' own shutdown takes seconds on a loaded machine
