import type { ProgressCallback } from "../progress.js";
import type { Tensor } from "../tensor/tensor.js";

/** Options of `Sidecar.start`. Every one has a default; `{}` starts the project's own Python environment. */
export interface SidecarOptions {
  /** Python interpreter; default `$LORAPORT_PYTHON`, else `<package root>/.venv/bin/python`. */
  readonly python?: string;
  /** The folder holding `sidecar/` and `schemas/`; default: found above the SDK's own files. */
  readonly root?: string;
  /** `ipc` (default; not on Windows): Unix sockets in a private 0700 folder. `tcp`: 127.0.0.1 with CURVE keys. */
  readonly transport?: "ipc" | "tcp";
  /**
   * Extra environment for the sidecar. `glibc.malloc.hugetlb=1` is added to GLIBC_TUNABLES unless overridden here
   * (large receive buffers are page-fault bound). For fast Python → Node transfers start Node itself with
   * `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` too.
   */
  readonly env?: Readonly<Record<string, string>>;
  /** Spawn → handshake answered (torch imported), default 120 000 ms. */
  readonly startTimeoutMs?: number;
  /** Default per-call timeout in ms (none when absent); each call can override it. */
  readonly timeoutMs?: number;
  /** After a cancel or timeout, how long the sidecar has to stop the call before it is killed; default 5 000 ms. */
  readonly cancelGraceMs?: number;
  /** On close: wait this long after closing stdin before SIGTERM; default 3 000 ms. */
  readonly closeGraceMs?: number;
  /** SIGTERM → SIGKILL delay, default 2 000 ms. */
  readonly forceKillAfterMs?: number;
  /** When the sidecar has died, start a new one on the next call instead of failing; default false. */
  readonly restartOnExit?: boolean;
  /** Cap on tensor bytes per message (both sides enforce it), default 8 GiB. */
  readonly maxMessageBytes?: number;
  /** Tensor bytes waiting in the sidecar above which it stops reading large messages (backpressure); default 2 GiB. */
  readonly maxQueuedBytes?: number;
  /** Messages with at least this many tensor bytes go over the bulk socket; default 1 MiB. */
  readonly bulkThreshold?: number;
  /**
   * Tensors of at least this many bytes travel, both ways, through a file in a private folder under /dev/shm
   * instead of a ZeroMQ frame: one kernel copy in, none out (Linux, where the native mmap helper is built; frames
   * elsewhere). Default 16 MiB; `Infinity` sends everything as frames.
   */
  readonly sharedMemoryThreshold?: number;
  /**
   * Shared-memory files are reused (a fresh file costs a page allocation per 4 KiB): up to this many bytes of idle
   * files stay in the session's /dev/shm folder for the next big tensor, either way. Default 512 MiB; 0 unlinks
   * every file once read.
   */
  readonly sharedMemoryPoolBytes?: number;
  /** Check every result against its schema in the sidecar (slower; for tests); default false. */
  readonly validateResults?: boolean;
  /** Receives the sidecar's stderr as it arrives (it is also kept as a tail for SidecarExitedError). */
  readonly onStderr?: (text: string) => void;
}

/** Options of one call. */
export interface CallOptions {
  /** Reject with TimeoutError after this many ms (and tell the sidecar to stop). Overrides the sidecar default. */
  readonly timeoutMs?: number;
  /** Abort → CancelledError now, a cancel message to the sidecar, and a kill if it does not stop in time. */
  readonly signal?: AbortSignal;
  /** Progress events of long operations. */
  readonly onProgress?: ProgressCallback;
}

/** What a call returns: the result document and the tensors, in order and by name. */
export interface CallResult<R> {
  readonly result: R;
  readonly tensors: readonly Tensor[];
  readonly named: Readonly<Record<string, Tensor>>;
}

/** The handshake's answer. */
export interface SidecarCapabilities {
  readonly protocol: number;
  readonly pid: number;
  readonly python: string;
  readonly torch: string;
  readonly transformers?: string | null;
  readonly peft?: string | null;
  readonly loralib?: string | null;
  readonly devices: readonly string[];
  readonly ops: readonly string[];
  readonly limits: { readonly maxMessageBytes: number; readonly maxHeaderBytes: number };
}
