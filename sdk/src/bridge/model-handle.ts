/**
 * A model living in the sidecar. Released when disposed (`release()`, `await using`), or when garbage-collected
 * if neither happened.
 */
import { SidecarExitedError } from "../errors.js";
import type { Tensor } from "../tensor/tensor.js";
import type {
  AttachAdapterParams, AttachAdapterResult, ForwardParams, GetTensorsParams, HfGenerateParams, HfGenerateResult, LoadModelResult, MergeAndUnloadResult,
  SaveAdapterParams, SaveAdapterResult,
} from "./generated/methods.js";
import { checkCallOptions, checkParams, checkString, checkTensorsIn } from "./internal/check-args.js";
import type { TensorsIn } from "./internal/codec.js";
import type { CallOptions, CallResult } from "./options.js";
import type { Sidecar } from "./sidecar.js";

// Handles forgotten without release() are released when collected (the sidecar may be gone by then: ignored).
const finalizer = new FinalizationRegistry<{ sc: WeakRef<Sidecar>; handle: string; generation: number }>((held) => {
  const sc = held.sc.deref();
  if (sc?.running && sc.sessionGeneration === held.generation) void sc.call("releaseModel", { handle: held.handle }).catch(() => {});
});

export class ModelHandle implements AsyncDisposable {
  readonly handle: string;
  readonly architecture: string;
  readonly numParameters: number;
  readonly dtype: string;
  readonly device: string;
  private released = false;

  constructor(private readonly sc: Sidecar, info: LoadModelResult, private readonly generation: number) {
    this.handle = info.handle;
    this.architecture = info.architecture;
    this.numParameters = info.numParameters;
    this.dtype = info.dtype;
    this.device = info.device;
    finalizer.register(this, { sc: new WeakRef(sc), handle: this.handle, generation }, this);
  }

  private check(): void {
    if (this.released) throw new SidecarExitedError(`model ${this.handle} was released`, undefined, undefined, "");
    if (this.sc.sessionGeneration !== this.generation) {
      throw new SidecarExitedError(`model ${this.handle} belonged to a sidecar that has exited; load it again`, undefined, undefined, "");
    }
  }

  /** Attach a LoRA adapter: a PEFT folder, a PEFT config + adapter tensors (by PEFT key), or a loralib checkpoint. */
  async attachAdapter(source: AttachAdapterParams["source"], opts: CallOptions & { adapterName?: string; tensors?: Readonly<Record<string, Tensor>> } = {}): Promise<AttachAdapterResult> {
    this.check();
    checkParams(source, "source");
    checkCallOptions(opts);
    checkTensorsIn(opts.tensors, "opts.tensors");
    const params: AttachAdapterParams = { handle: this.handle, source, ...(opts.adapterName ? { adapterName: opts.adapterName } : {}) };
    return (await this.sc.call("attachAdapter", params, opts.tensors, opts)).result;
  }

  /** Run the model (eval, no grad). Inputs by forward-argument name; returns the requested outputs by name. */
  async forward(inputs: Readonly<Record<string, Tensor>>, params: Omit<ForwardParams, "handle"> = {}, opts?: CallOptions): Promise<Readonly<Record<string, Tensor>>> {
    this.check();
    checkTensorsIn(inputs, "inputs");
    checkParams(params);
    return (await this.sc.call("forward", { handle: this.handle, ...params }, inputs, opts)).named;
  }

  /** transformers' own greedy `generate` (with the attached PEFT adapter): the reference for loraport's generation. */
  async hfGenerate(params: Omit<HfGenerateParams, "handle">, opts?: CallOptions): Promise<HfGenerateResult> {
    this.check();
    checkParams(params);
    return (await this.sc.call("hfGenerate", { handle: this.handle, ...params }, undefined, opts)).result;
  }

  async mergeAndUnload(opts?: CallOptions): Promise<MergeAndUnloadResult> {
    this.check();
    return (await this.sc.call("mergeAndUnload", { handle: this.handle }, undefined, opts)).result;
  }

  /** Weights by state-dict name. */
  async getTensors(select: Omit<GetTensorsParams, "handle"> = {}, opts?: CallOptions): Promise<Readonly<Record<string, Tensor>>> {
    this.check();
    checkParams(select, "select");
    return (await this.sc.call("getTensors", { handle: this.handle, ...select }, undefined, opts)).named;
  }

  async saveAdapter(path: string, more: Omit<SaveAdapterParams, "handle" | "path"> = {}, opts?: CallOptions): Promise<SaveAdapterResult> {
    this.check();
    checkString(path, "path", "an output folder");
    checkParams(more, "more");
    return (await this.sc.call("saveAdapter", { handle: this.handle, path, ...more }, undefined, opts)).result;
  }

  /** Any other op that takes `{handle}` (e.g. ones added by other areas). */
  async call(method: string, params: object = {}, tensors?: TensorsIn, opts?: CallOptions): Promise<CallResult<Record<string, unknown>>> {
    this.check();
    checkParams(params);
    return this.sc.call(method, { handle: this.handle, ...params }, tensors, opts);
  }

  /** Free the model in the sidecar. Idempotent; a no-op once the sidecar is gone. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    finalizer.unregister(this);
    if (this.sc.running && this.sc.sessionGeneration === this.generation) await this.sc.call("releaseModel", { handle: this.handle });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}
