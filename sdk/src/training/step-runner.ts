/**
 * Runs the artifact's graphs with onnxruntime-node: one InferenceSession per graph, created when first needed.
 * Inputs and outputs are matched by the names in the manifest (`p.<key>`, `new_m.<key>`, …), never by position.
 */
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { RuntimeError } from "../errors.js";
import type { ExecutionProvider } from "../runtime/providers.js";
import type { Batch } from "./data.js";
import type { GraphName, TrainManifest } from "./manifest.js";
import type { WireState } from "./worker-protocol.js";

export class StepRunner {
  readonly #dir: string;
  readonly #manifest: TrainManifest;
  readonly #options: ort.InferenceSession.SessionOptions;
  readonly #sessions = new Map<GraphName, Promise<ort.InferenceSession>>();
  readonly #keys: readonly string[];

  constructor(dir: string, manifest: TrainManifest, providers: readonly ExecutionProvider[], intraOpNumThreads: number | undefined) {
    this.#dir = dir;
    this.#manifest = manifest;
    this.#keys = manifest.params.map((p) => p.key);
    this.#options = {
      executionProviders: [...providers],
      graphOptimizationLevel: "all",
      ...(intraOpNumThreads !== undefined ? { intraOpNumThreads } : {}),
    };
  }

  session(graph: GraphName): Promise<ort.InferenceSession> {
    let s = this.#sessions.get(graph);
    if (!s) {
      const path = join(this.#dir, this.#manifest.graphs[graph].file);
      s = ort.InferenceSession.create(path, this.#options).catch((err: unknown) => {
        throw new RuntimeError(`${path}: onnxruntime could not load the graph: ${(err as Error).message}`);
      });
      this.#sessions.set(graph, s);
    }
    return s;
  }

  #group(prefix: string, arrays: readonly Float32Array[], feeds: Record<string, ort.Tensor>): void {
    this.#manifest.params.forEach((info, i) => {
      feeds[`${prefix}.${info.key}`] = new ort.Tensor("float32", arrays[i]!, [...info.shape]);
    });
  }

  #batchFeeds(batch: Batch, feeds: Record<string, ort.Tensor>, withLabels = true): void {
    const [b, t] = batch.shape;
    feeds["input_ids"] = new ort.Tensor("int64", batch.inputIds, [b, t]);
    feeds["attention_mask"] = new ort.Tensor("int64", batch.attentionMask, [b, t]);
    if (withLabels) feeds["labels"] = new ort.Tensor("int64", batch.labels, this.#manifest.task === "seq-cls" ? [b] : [b, t]);
  }

  #outGroup(prefix: string, out: ort.InferenceSession.OnnxValueMapType): Float32Array[] {
    return this.#keys.map((k) => {
      const t = out[`${prefix}.${k}`];
      if (!t) throw new RuntimeError(`graph output '${prefix}.${k}' missing (artifact and manifest disagree)`);
      return t.data as Float32Array;
    });
  }

  static #scalar(x: number): ort.Tensor {
    return new ort.Tensor("float32", Float32Array.of(x), []);
  }

  /** One fused step: forward, loss, backward, AdamW. */
  async trainStep(state: WireState, lr: number, batch: Batch): Promise<{ loss: number; state: WireState }> {
    const feeds: Record<string, ort.Tensor> = {};
    this.#group("p", state.params, feeds);
    this.#group("m", state.m, feeds);
    this.#group("v", state.v, feeds);
    feeds["step"] = StepRunner.#scalar(state.step);
    feeds["lr"] = StepRunner.#scalar(lr);
    this.#batchFeeds(batch, feeds);
    const out = await (await this.session("train_step")).run(feeds);
    return {
      loss: (out["loss"]!.data as Float32Array)[0]!,
      state: { params: this.#outGroup("new_p", out), m: this.#outGroup("new_m", out), v: this.#outGroup("new_v", out), step: (out["new_step"]!.data as Float32Array)[0]!, fitStartStep: state.fitStartStep },
    };
  }

  /** Loss and gradients of one micro-batch (gradient accumulation). */
  async gradStep(params: readonly Float32Array[], batch: Batch): Promise<{ loss: number; grads: Float32Array[] }> {
    const feeds: Record<string, ort.Tensor> = {};
    this.#group("p", params, feeds);
    this.#batchFeeds(batch, feeds);
    const out = await (await this.session("grad_step")).run(feeds);
    return { loss: (out["loss"]!.data as Float32Array)[0]!, grads: this.#outGroup("grad", out) };
  }

  /** AdamW with given gradients. */
  async applyStep(state: WireState, grads: readonly Float32Array[], lr: number): Promise<WireState> {
    const feeds: Record<string, ort.Tensor> = {};
    this.#group("p", state.params, feeds);
    this.#group("m", state.m, feeds);
    this.#group("v", state.v, feeds);
    this.#group("grad", grads, feeds);
    feeds["step"] = StepRunner.#scalar(state.step);
    feeds["lr"] = StepRunner.#scalar(lr);
    const out = await (await this.session("apply_step")).run(feeds);
    return { params: this.#outGroup("new_p", out), m: this.#outGroup("new_m", out), v: this.#outGroup("new_v", out), step: (out["new_step"]!.data as Float32Array)[0]!, fitStartStep: state.fitStartStep };
  }

  async evalLoss(params: readonly Float32Array[], batch: Batch): Promise<number> {
    const feeds: Record<string, ort.Tensor> = {};
    this.#group("p", params, feeds);
    this.#batchFeeds(batch, feeds);
    const out = await (await this.session("eval")).run(feeds);
    return (out["loss"]!.data as Float32Array)[0]!;
  }

  async forward(params: readonly Float32Array[], batch: Batch): Promise<{ data: Float32Array; dims: number[] }> {
    const feeds: Record<string, ort.Tensor> = {};
    this.#group("p", params, feeds);
    this.#batchFeeds(batch, feeds, false);
    const out = await (await this.session("forward")).run(feeds);
    const logits = out["logits"]!;
    return { data: logits.data as Float32Array, dims: [...logits.dims] };
  }

  async release(): Promise<void> {
    for (const s of this.#sessions.values()) await (await s.catch(() => undefined))?.release();
    this.#sessions.clear();
  }
}
