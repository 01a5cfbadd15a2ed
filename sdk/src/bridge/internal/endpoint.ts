/**
 * Where the sidecar listens: `ipc://` sockets in a private 0700 folder (the folder is the access control and is
 * removed on close), or `tcp://127.0.0.1` with CURVE keys when asked for.
 */
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { curveKeyPair } from "zeromq";
import { LoraportError } from "../../errors.js";

export interface CurveKeys {
  readonly serverPublic: string;
  readonly serverSecret: string;
  readonly clientPublic: string;
  readonly clientSecret: string;
}

export interface EndpointPlan {
  readonly transport: "ipc" | "tcp";
  /** Endpoints the sidecar binds (tcp: port 0, the READY line reports the real one). */
  readonly control: string;
  readonly bulk: string;
  readonly curve: CurveKeys | undefined;
  /** The private folder of ipc sockets, removed by `dispose`. */
  readonly dir: string | undefined;
  dispose(): void;
}

// Linux caps sun_path at 107 bytes; macOS's $TMPDIR is long, so prefer /tmp when it exists.
const IPC_PATH_MAX = 107;

export function planEndpoints(transport: "ipc" | "tcp"): EndpointPlan {
  if (transport === "tcp") {
    const s = curveKeyPair();
    const c = curveKeyPair();
    return {
      transport, control: "tcp://127.0.0.1:0", bulk: "tcp://127.0.0.1:0", dir: undefined,
      curve: { serverPublic: s.publicKey, serverSecret: s.secretKey, clientPublic: c.publicKey, clientSecret: c.secretKey },
      dispose() {},
    };
  }
  const base = process.platform === "win32" ? tmpdir() : "/tmp";
  const dir = mkdtempSync(join(base, "lps-"));
  chmodSync(dir, 0o700);
  const control = join(dir, "c");
  if (Buffer.byteLength(control) > IPC_PATH_MAX) {
    rmSync(dir, { recursive: true, force: true });
    throw new LoraportError("E_SIDECAR_ENDPOINT", `${control}: ipc socket path longer than ${IPC_PATH_MAX} bytes`);
  }
  return {
    transport, control: `ipc://${control}`, bulk: `ipc://${join(dir, "b")}`, curve: undefined, dir,
    dispose() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
