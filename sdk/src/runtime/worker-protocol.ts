/** Messages between LoraModel (main thread) and the session worker. Plain data; array buffers are transferred. */
import type { ExecutionProvider } from "./providers.js";

/** Name of the base model's feeds in the worker (rank-0 factors, base head values); every adapter's run starts from them. */
export const BASE_ADAPTER = "\u0000base";

/** A tensor on the wire: ONNX Runtime type name, dims and the typed array. */
export interface WireTensor {
  readonly type: "float32" | "int64" | "float16";
  readonly dims: readonly number[];
  readonly data: Float32Array | BigInt64Array | Uint16Array;
}

/** The graph's KV cache as the worker needs it (from the manifest's `generation.kv_cache`). */
export interface WorkerKvLayout {
  readonly past: readonly string[];
  readonly present: readonly string[];
  readonly positionIds: string;
  readonly kvHeads: number;
  readonly headDim: number;
}

/** An adapter-inputs graph's LoRA inputs: the factor tables per module and the row-slot input. */
export interface WorkerLoraLayout {
  readonly index: string;
  readonly modules: readonly { readonly a: string; readonly b: string; readonly in: number; readonly out: number }[];
  /** Embeddings' trainable-token tables: ids `[slots, n]` (-1 = none) and rows `[slots, n, dim]`. */
  readonly tokens?: readonly { readonly ids: string; readonly rows: string; readonly dim: number }[];
}

export type WorkerRequest =
  | { readonly id: number; readonly op: "init"; readonly modelPath: string; readonly providers: readonly ExecutionProvider[]; readonly intraOpNumThreads?: number; readonly interOpNumThreads?: number; readonly kv?: WorkerKvLayout; readonly lora?: WorkerLoraLayout }
  /** Build an adapter's feeds once in the worker; later runs pick them by name (the swap is a map lookup). */
  | { readonly id: number; readonly op: "setAdapter"; readonly name: string; readonly feeds: Readonly<Record<string, WireTensor>> }
  | { readonly id: number; readonly op: "dropAdapter"; readonly name: string }
  /** `rows`: each batch row's adapter name (BASE_ADAPTER for the base); null for a graph without LoRA inputs. */
  | { readonly id: number; readonly op: "run"; readonly rows: readonly string[] | null; readonly inputs: Readonly<Record<string, WireTensor>>; readonly outputs: readonly string[] }
  /**
   * Start a cached sequence group: run the prompt rows (`input_ids`, `attention_mask` `[batch, T]`, left-padded)
   * and keep their KV cache in the worker under `seq`. Replies with the last position's logits `[batch, vocab]`.
   */
  | { readonly id: number; readonly op: "prefill"; readonly seq: number; readonly rows: readonly string[] | null; readonly inputIds: BigInt64Array; readonly attentionMask: BigInt64Array; readonly dims: readonly [number, number] }
  /** One new token per row of group `seq` (`[batch]`); the cache grows by one; replies with logits `[batch, vocab]`. */
  | { readonly id: number; readonly op: "decode"; readonly seq: number; readonly tokens: BigInt64Array }
  | { readonly id: number; readonly op: "release"; readonly seq: number }
  /** Append group `from`'s rows to group `into` (caches right-aligned to the longer one); `from` is consumed. */
  | { readonly id: number; readonly op: "merge"; readonly into: number; readonly from: number }
  /** Keep only rows `keep` (in that order) of group `seq`; leading cache columns no row uses are cut. */
  | { readonly id: number; readonly op: "keepRows"; readonly seq: number; readonly keep: readonly number[] }
  | { readonly id: number; readonly op: "close" };

export type WorkerResponse =
  | { readonly id: number; readonly ok: true; readonly inputNames?: readonly string[]; readonly outputNames?: readonly string[]; readonly provider?: ExecutionProvider; readonly outputs?: Readonly<Record<string, WireTensor>>; readonly ms?: number; readonly prepMs?: number }
  | { readonly id: number; readonly ok: false; readonly error: string };
