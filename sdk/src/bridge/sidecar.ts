/**
 * `Sidecar`: a Python process running PyTorch, PEFT and loralib for this Node process, called over ZeroMQ.
 *
 *   await using sc = await Sidecar.start();
 *   const model = await sc.loadModel({ source: { kind: "builtin", family: "gpt2" } });
 *   const { named } = await model.forward({ input_ids: ids });
 */
import { endianness } from "node:os";
import { ProtocolError, RemoteError, SidecarEnvironmentError, SidecarError, SidecarExitedError } from "../errors.js";
import { resolveModelPath } from "../hub/resolve-model.js";
import type { MethodMap, MethodName } from "./generated/methods.js";
import type { HelloResult, LoadModelParams } from "./generated/methods.js";
import { checkCallOptions, checkMethod, checkParams, checkSidecarOptions, checkString, checkTensorsIn } from "./internal/check-args.js";
import { PROTOCOL_VERSION, encodeHeader, type TensorsIn } from "./internal/codec.js";
import { planEndpoints, type EndpointPlan } from "./internal/endpoint.js";
import { SidecarProcess, choosePython, resolveRoot, type ExitInfo } from "./internal/process.js";
import { Rpc } from "./internal/rpc.js";
import { DEFAULT_SHARED_MEMORY_POOL_BYTES, DEFAULT_SHARED_MEMORY_THRESHOLD, createSharedMemory, type SharedMemory } from "./internal/shared-memory.js";
import { Transport } from "./internal/transport.js";
import {
  exportOnnxCall, exportTrainStepCall, type ExportOnnxOptions, type ExportOnnxResult, type ExportTrainStepOptions,
  type ExportTrainStepResult, type TrainStepModel,
} from "./export-calls.js";
import { ModelHandle } from "./model-handle.js";
import type { CallOptions, CallResult, SidecarCapabilities, SidecarOptions } from "./options.js";

const DEFAULT_MAX_MESSAGE_BYTES = 8 * 2 ** 30;

/** One running sidecar process and its connection (replaced when `restartOnExit` restarts it). */
interface Session {
  readonly proc: SidecarProcess;
  readonly transport: Transport;
  readonly rpc: Rpc;
  /** Sockets and the shared-memory folder; `dispose` removes both folders. */
  readonly endpoints: EndpointPlan;
  readonly sharedMemory: SharedMemory | undefined;
  readonly controlEndpoint: string;
  readonly generation: number;
  capabilities: SidecarCapabilities | undefined;
  exitError: SidecarExitedError | undefined;
  /** Why we killed it, when we did. */
  killReason: string | undefined;
}

export class Sidecar implements AsyncDisposable {
  private session: Session | undefined;
  private starting: Promise<Session> | undefined;
  private closed = false;
  private generation = 0;
  private readonly opts: SidecarOptions;

  private constructor(opts: SidecarOptions) {
    this.opts = opts;
  }

  /** Spawn the sidecar and handshake (protocol version, torch version, devices). */
  static async start(opts: SidecarOptions = {}): Promise<Sidecar> {
    checkSidecarOptions(opts);
    const sc = new Sidecar(opts);
    await sc.ensureSession();
    return sc;
  }

  /** The handshake's answer: protocol, pid, torch/transformers/peft/loralib versions, devices, ops, limits. */
  get capabilities(): SidecarCapabilities {
    const c = this.session?.capabilities;
    if (!c) throw new SidecarError("E_SIDECAR_CLOSED", "sidecar not running");
    return c;
  }

  /** The sidecar's process id (undefined once it is gone). */
  get pid(): number | undefined {
    return this.session?.exitError ? undefined : this.session?.proc.pid;
  }

  /** The control endpoint (`ipc://…` or `tcp://127.0.0.1:…`). */
  get endpoint(): string | undefined {
    return this.session?.controlEndpoint;
  }

  /** Private folder of the ipc sockets (removed on close). */
  get socketDir(): string | undefined {
    return this.session?.endpoints.dir;
  }

  /** Private folder in /dev/shm through which big tensors travel (removed on close); undefined when not in use. */
  get sharedMemoryDir(): string | undefined {
    return this.session?.sharedMemory?.dir;
  }

  /** Incremented each time a new sidecar process is started (restartOnExit). Model handles belong to one. */
  get sessionGeneration(): number {
    return this.session?.generation ?? 0;
  }

  get running(): boolean {
    return this.session !== undefined && this.session.exitError === undefined && !this.closed;
  }

  // ---- calls ---------------------------------------------------------------------------------------

  /**
   * Call any sidecar op: typed for the methods in `schemas/methods/`, untyped for others. Tensors are sent without
   * copying: do not modify their data until the returned promise settles.
   */
  call<M extends MethodName>(method: M, params: MethodMap[M]["params"], tensors?: TensorsIn, opts?: CallOptions): Promise<CallResult<MethodMap[M]["result"]>>;
  call(method: string, params: object, tensors?: TensorsIn, opts?: CallOptions): Promise<CallResult<Record<string, unknown>>>;
  async call(method: string, params: object, tensors?: TensorsIn, opts: CallOptions = {}): Promise<CallResult<unknown>> {
    // Checked before anything starts: a bad argument is the caller's ArgumentError, never a crash in the encoder.
    checkMethod(method);
    checkParams(params);
    checkTensorsIn(tensors);
    checkCallOptions(opts);
    const s = await this.ensureSession();
    return s.rpc.call(method, params, tensors, opts, this.opts.timeoutMs);
  }

  /** Round trip through the sidecar's IO thread (answered even while a long op computes). */
  async ping(opts?: CallOptions): Promise<number> {
    const t0 = performance.now();
    await this.call("ping", {}, undefined, opts);
    return performance.now() - t0;
  }

  /** Load a transformers model (a builtin tiny one, a local folder, or config + safetensors). */
  async loadModel(params: LoadModelParams, opts?: CallOptions): Promise<ModelHandle> {
    const { result } = await this.call("loadModel", params, undefined, opts);
    return new ModelHandle(this, result, this.sessionGeneration);
  }

  /**
   * Export a base model to ONNX for `LoraModel.load` (written atomically to `out`, with its manifest). `model`: a
   * Hugging Face model folder, or a handle loaded in this sidecar.
   */
  async exportOnnx(model: string | ModelHandle, out: string, options: ExportOnnxOptions = {}): Promise<ExportOnnxResult> {
    if (!(model instanceof ModelHandle)) checkString(model, "model", "a model folder or a ModelHandle");
    checkString(out, "out", "an output folder");
    const { params, call } = exportOnnxCall(typeof model === "string" ? await resolveModelPath(model) : model, out, options);
    return (await this.call("exportOnnx", params, undefined, call)).result;
  }

  /**
   * Export a train-step artifact (graphs, initial adapter, manifest) for `Trainer.load`. The export refuses to
   * finish unless its gates pass against PyTorch (see the method's schema).
   */
  async exportTrainStep(model: TrainStepModel, out: string, options: ExportTrainStepOptions = {}): Promise<ExportTrainStepResult> {
    if (typeof model !== "object" || model === null) checkString(model, "model", "a model folder or { builtin }");
    checkString(out, "out", "an output folder");
    const { params, call } = exportTrainStepCall(typeof model === "string" ? await resolveModelPath(model) : model, out, options);
    return (await this.call("exportTrainStep", params, undefined, call)).result;
  }

  // ---- lifecycle -----------------------------------------------------------------------------------

  private async ensureSession(): Promise<Session> {
    if (this.closed) throw new SidecarError("E_SIDECAR_CLOSED", "sidecar closed");
    const s = this.session;
    if (s && !s.exitError) return s;
    if (s?.exitError && !this.opts.restartOnExit && this.generation > 0) throw s.exitError;
    this.starting ??= this.spawn().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async spawn(): Promise<Session> {
    if (endianness() !== "LE") throw new ProtocolError("the wire format is little-endian; this host is big-endian");
    const root = resolveRoot(this.opts.root);
    const { python, source: pythonSource } = choosePython(this.opts.python, root);
    // libzmq has no ipc:// on Windows.
    const plan = planEndpoints(this.opts.transport ?? (process.platform === "win32" ? "tcp" : "ipc"));
    const shm = createSharedMemory(this.opts.sharedMemoryThreshold ?? DEFAULT_SHARED_MEMORY_THRESHOLD, this.opts.sharedMemoryPoolBytes ?? DEFAULT_SHARED_MEMORY_POOL_BYTES);
    const endpoints: EndpointPlan = { ...plan, dispose: () => { plan.dispose(); shm?.dispose(); } };
    const maxMessageBytes = this.opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    const bulkThreshold = this.opts.bulkThreshold ?? 2 ** 20;
    const config: Record<string, unknown> = {
      control: endpoints.control, bulk: endpoints.bulk, maxMessageBytes, bulkThreshold,
      validateResults: this.opts.validateResults ?? false,
      ...(this.opts.maxQueuedBytes !== undefined ? { maxQueuedBytes: this.opts.maxQueuedBytes } : {}),
      ...(shm !== undefined ? { shmDir: shm.dir, shmThreshold: shm.threshold, shmPoolBytes: shm.poolBytes } : {}),
    };
    if (endpoints.curve) {
      config["curve"] = { serverSecret: endpoints.curve.serverSecret, serverPublic: endpoints.curve.serverPublic, clientPublic: endpoints.curve.clientPublic };
    }
    const startTimeoutMs = this.opts.startTimeoutMs ?? 120_000;
    let spawned;
    try {
      spawned = await SidecarProcess.spawn({
        python, pythonSource, root, config, env: this.opts.env ?? {}, startTimeoutMs,
        forceKillAfterMs: this.opts.forceKillAfterMs ?? 2000, onStderr: this.opts.onStderr,
      });
    } catch (e) {
      endpoints.dispose();
      throw e;
    }
    const { proc, ready } = spawned;
    let session!: Session;
    const rpc = new Rpc({
      sendControl: (f) => session.transport.sendControl(f),
      sendBulk: (f) => session.transport.sendBulk(f),
      onStuck: (method, id) => {
        // A call that ignores cancellation: the process goes, every pending call rejects.
        session.killReason = `killed because ${method} #${id} did not stop within ${this.opts.cancelGraceMs ?? 5000} ms of being cancelled`;
        proc.kill("SIGTERM");
      },
      bulkThreshold,
      maxMessageBytes: () => Math.min(maxMessageBytes, session.capabilities?.limits.maxMessageBytes ?? maxMessageBytes),
      cancelGraceMs: this.opts.cancelGraceMs ?? 5000,
      sharedMemory: shm,
    });
    const transport = new Transport(ready.endpoints, endpoints.curve, (frames) => rpc.onMessage(frames));
    session = { proc, transport, rpc, endpoints, sharedMemory: shm, controlEndpoint: ready.endpoints.control, generation: ++this.generation, capabilities: undefined, exitError: undefined, killReason: undefined };
    this.session = session;
    void proc.exited.then((info) => this.onExit(session, info));
    // Tell the sidecar which bulk socket is ours (it replies with large tensors there).
    if (transport.hasBulk) void transport.sendBulk([encodeHeader({ v: PROTOCOL_VERSION, kind: "event", event: "hello" })]).catch(() => {});
    try {
      const { result } = (await rpc.call("hello", { client: "loraport-ts" }, undefined, { timeoutMs: startTimeoutMs }, undefined)) as CallResult<HelloResult>;
      if (result.protocol !== PROTOCOL_VERSION) throw new ProtocolError(`sidecar speaks protocol ${result.protocol}, this SDK ${PROTOCOL_VERSION}`);
      session.capabilities = result;
    } catch (e) {
      await this.teardown(session, 0);
      // torch and the other heavy packages are imported after READY: an environment lacking them fails here.
      const missing = e instanceof RemoteError ? /No module named '([^']+)'/.exec(e.message) : null;
      if (missing) {
        throw new SidecarEnvironmentError(
          `the Python environment tried for the sidecar, ${python} (from ${pythonSource}), has no module '${missing[1]}' (the sidecar needs sidecar/requirements.txt installed). \`npm run setup\` (in ${root}) makes the sidecar's environment in .venv; or pass { python } / set LORAPORT_PYTHON`,
          python, missing[1]!.split(".")[0], {});
      }
      throw e;
    }
    return session;
  }

  private onExit(s: Session, info: ExitInfo): void {
    const tail = info.stderrTail.trim().split("\n").slice(-5).join(" | ");
    s.exitError = new SidecarExitedError(
      `sidecar (pid ${s.proc.pid}) exited with ${info.signal ? `signal ${info.signal}` : `code ${info.exitCode}`}${s.killReason ? ` (${s.killReason})` : ""}${tail ? `; stderr: ${tail}` : ""}`,
      info.exitCode, info.signal, info.stderrTail);
    s.rpc.failAll(s.exitError, true);
    s.transport.close();
    s.endpoints.dispose();
  }

  private async teardown(s: Session, graceMs: number): Promise<void> {
    s.rpc.failAll(new SidecarError("E_SIDECAR_CLOSED", "sidecar closed while the call was pending"), true);
    s.transport.close();
    await s.proc.stop(graceMs);
    s.endpoints.dispose();
  }

  /** Stop the sidecar: pending calls reject, stdin closes (the sidecar exits), SIGTERM then SIGKILL if it lingers. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const s = this.starting ? await this.starting.catch(() => undefined) : this.session;
    if (s) await this.teardown(s, this.opts.closeGraceMs ?? 3000);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
