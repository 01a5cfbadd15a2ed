"""``python -m loraport_sidecar``: started by the TS SDK, configured by one JSON line on stdin.

stdin then stays open as the lifeline: EOF (parent gone or closing) shuts the sidecar down. The READY line on
stdout carries the bound endpoints. torch is imported after READY, on the compute thread (≈0.7 s).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys

from .lifeline import parent_gone, set_parent_death_signal, watch_stdin
from .server import Server, ServerConfig


def main() -> int:
    ppid = os.getppid()
    set_parent_death_signal(signal.SIGTERM)
    if parent_gone(ppid):  # the parent died before prctl took effect
        return 1
    logging.basicConfig(stream=sys.stderr, level=os.environ.get("LORAPORT_SIDECAR_LOG", "WARNING"),
                        format="sidecar %(levelname)s %(message)s")
    line = sys.stdin.buffer.readline()
    if not line:
        print("loraport_sidecar: expected a JSON config line on stdin", file=sys.stderr)
        return 2
    config = ServerConfig.from_json(json.loads(line))
    server = Server(config)
    server.bind()
    server.start()

    def stop(*_: object) -> None:
        server.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    watch_stdin(stop)
    sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid(), "endpoints": server.endpoints}) + "\n")
    sys.stdout.flush()
    while not server.stop.wait(0.5):
        if parent_gone(ppid):
            break
    server.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the compute thread may be inside torch; do not wait for it


if __name__ == "__main__":
    sys.exit(main())
