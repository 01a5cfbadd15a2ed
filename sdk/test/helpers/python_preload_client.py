"""Runs `python ARGS` in a child of the test run's preloaded interpreter (python_preload.py) instead of a new one:
same stdin/stdout/stderr, working folder, environment and exit status. Imports nothing heavy (it starts in ~50 ms).
When that is not possible (no preloaded interpreter, other interpreter options, an environment that differs where
the preloaded imports read it) it becomes a plain `python ARGS`.

usage: python_preload_client.py SOCKET ARGS...  (ARGS as for python: -c CODE ..., -m MODULE ..., SCRIPT ...)
"""

import json
import os
import socket
import struct
import sys
import time

path, args = sys.argv[1], sys.argv[2:]


def plain() -> None:
    os.execv(sys.executable, [sys.executable, *args])


def import_env(env) -> dict:
    # The same selection as python_preload.py's (not imported from there: it imports torch).
    prefixes = ("HF_", "HUGGINGFACE", "TRANSFORMERS", "TORCH", "PYTORCH", "PEFT", "OMP_", "MKL_", "OPENBLAS", "CUDA",
                "PYTHON", "LD_", "TOKENIZERS", "XDG_", "ONNX", "ORT_", "HOME", "TMPDIR", "KMP_", "NUMEXPR", "VIRTUAL_ENV")
    return {k: v for k, v in env.items() if k.startswith(prefixes)}


if not args or (args[0].startswith("-") and args[0] not in ("-c", "-m")) or len(args) < (2 if args[0] in ("-c", "-m") else 1):
    plain()
# The preloaded interpreter is still importing at the start of the run: wait for it (a second interpreter
# importing the same libraries beside it would only slow both), unless it failed to start.
deadline = time.monotonic() + 600
while not os.path.exists(path):
    if os.path.exists(f"{path}.failed") or time.monotonic() > deadline:
        plain()
    time.sleep(0.1)
try:
    with open(f"{path}.env.json") as f:
        same_env = json.load(f) == import_env(os.environ)
except (OSError, ValueError):
    same_env = False
if not same_env:
    plain()
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    sock.connect(path)
except OSError:
    plain()
body = json.dumps({"argv": args, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
socket.send_fds(sock, [struct.pack(">I", len(body))], [0, 1, 2])
sock.sendall(body)
status = b""
while len(status) < 4:
    chunk = sock.recv(4 - len(status))
    if not chunk:
        sys.exit("python_preload_client: the preloaded interpreter (sdk/test/helpers/python_preload.py) went away")
    status += chunk
sys.exit(struct.unpack(">i", status)[0])
