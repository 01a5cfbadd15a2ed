/**
 * The worker thread that owns the ONNX Runtime session. onnxruntime-node's `run` is synchronous underneath and
 * blocks its thread, so it runs here and the main thread's requests and timers keep flowing.
 * Adapters' feeds are built once (`setAdapter`) and kept; a run names one, so switching adapters costs nothing.
 * KV caches of cached sequence groups (`prefill`/`decode`) stay here too: `present` outputs are fed back as the
 * next step's `past` without ever crossing to the main thread; only the last position's logits do.
 */
import { parentPort } from "node:worker_threads";
import * as ort from "onnxruntime-node";
import type { ExecutionProvider } from "./providers.js";
import { BASE_ADAPTER, type WireTensor, type WorkerKvLayout, type WorkerRequest, type WorkerResponse } from "./worker-protocol.js";

if (!parentPort) throw new Error("session-worker must run as a worker thread");
const port = parentPort;

let session: ort.InferenceSession | undefined;
let provider: ExecutionProvider = "cpu";
let kv: WorkerKvLayout | undefined;
const adapters = new Map<string, Record<string, ort.Tensor>>();

/** A cached sequence group: its adapter, the mask over [dummy slot, prompt, generated], next positions, the cache. */
interface SequenceGroup {
  readonly adapter: string | null;
  readonly batch: number;
  mask: BigInt64Array;
  columns: number;
  readonly nextPosition: BigInt64Array;
  past: Record<string, ort.Tensor>;
}
const groups = new Map<number, SequenceGroup>();

function toOrt(t: WireTensor): ort.Tensor {
  return new ort.Tensor(t.type, t.data, [...t.dims]);
}

function adapterFeeds(name: string | null): Record<string, ort.Tensor> {
  if (name === null) return {};
  const a = adapters.get(name);
  if (!a) throw new Error(`adapter '${name}' is not registered in the session worker`);
  // Base feeds first (rank 0, base head values), then the adapter's own: it may leave the head to the base.
  return { ...adapters.get(BASE_ADAPTER), ...a };
}

/** A past of one masked slot per layer: the prefill of the single prefill+decode graph (see the exporter). */
function dummyPast(layout: WorkerKvLayout, batch: number): Record<string, ort.Tensor> {
  const zeros = new Float32Array(batch * layout.kvHeads * layout.headDim);
  const feeds: Record<string, ort.Tensor> = {};
  for (const name of layout.past) feeds[name] = new ort.Tensor("float32", zeros, [batch, layout.kvHeads, 1, layout.headDim]);
  return feeds;
}

/** `[batch, T]` mask → `[batch, 1 + T]` with the dummy slot's column 0. */
function withDummyColumn(mask: BigInt64Array, batch: number, seq: number): BigInt64Array {
  const out = new BigInt64Array(batch * (seq + 1));
  for (let b = 0; b < batch; b++) out.set(mask.subarray(b * seq, (b + 1) * seq), b * (seq + 1) + 1);
  return out;
}

function lastPositionLogits(logits: ort.Tensor): Float32Array {
  const [batch, seq, vocab] = logits.dims as [number, number, number];
  const data = logits.data as Float32Array;
  if (seq === 1) return data.slice();
  const out = new Float32Array(batch * vocab);
  for (let b = 0; b < batch; b++) out.set(data.subarray((b * seq + seq - 1) * vocab, (b * seq + seq) * vocab), b * vocab);
  return out;
}

function requireSession(): ort.InferenceSession {
  if (!session) throw new Error("session not initialised");
  return session;
}

function requireKv(): WorkerKvLayout {
  if (!kv) throw new Error("this export has no KV cache (re-export it with this loraport to generate)");
  return kv;
}

async function runGroup(g: SequenceGroup, inputIds: BigInt64Array, seq: number, positions: BigInt64Array): Promise<{ logits: Float32Array; ms: number; prepMs: number }> {
  const layout = requireKv();
  const t0 = performance.now();
  const feeds: Record<string, ort.Tensor> = {
    ...adapterFeeds(g.adapter),
    ...g.past,
    input_ids: new ort.Tensor("int64", inputIds, [g.batch, seq]),
    attention_mask: new ort.Tensor("int64", g.mask, [g.batch, g.columns]),
    [layout.positionIds]: new ort.Tensor("int64", positions, [g.batch, seq]),
  };
  const t1 = performance.now();
  const res = await requireSession().run(feeds, ["logits", ...layout.present]);
  const ms = performance.now() - t1;
  const past: Record<string, ort.Tensor> = {};
  layout.present.forEach((name, i) => (past[layout.past[i]!] = res[name]!));
  g.past = past;
  return { logits: lastPositionLogits(res["logits"]!), ms, prepMs: t1 - t0 };
}

async function handle(msg: WorkerRequest): Promise<WorkerResponse> {
  switch (msg.op) {
    case "init": {
      const options: ort.InferenceSession.SessionOptions = {
        executionProviders: [...msg.providers],
        graphOptimizationLevel: "all",
        ...(msg.intraOpNumThreads !== undefined ? { intraOpNumThreads: msg.intraOpNumThreads } : {}),
        ...(msg.interOpNumThreads !== undefined ? { interOpNumThreads: msg.interOpNumThreads } : {}),
      };
      session = await ort.InferenceSession.create(msg.modelPath, options);
      kv = msg.kv;
      // Creation fails outright when a listed provider cannot be appended, so the first one is the one that runs.
      provider = msg.providers[0] ?? "cpu";
      return { id: msg.id, ok: true, inputNames: session.inputNames, outputNames: session.outputNames, provider };
    }
    case "setAdapter": {
      const feeds: Record<string, ort.Tensor> = {};
      for (const [name, t] of Object.entries(msg.feeds)) feeds[name] = toOrt(t);
      adapters.set(msg.name, feeds);
      return { id: msg.id, ok: true };
    }
    case "dropAdapter":
      adapters.delete(msg.name);
      return { id: msg.id, ok: true };
    case "run": {
      const s = requireSession();
      const t0 = performance.now();
      const feeds: Record<string, ort.Tensor> = { ...adapterFeeds(msg.adapter) };
      for (const [name, t] of Object.entries(msg.inputs)) feeds[name] = toOrt(t);
      if (kv) {
        // A plain forward through the KV graph: positions 0..T-1 (what the model does without position ids), an
        // empty cache as the one masked slot.
        const ids = msg.inputs["input_ids"]!;
        const [batch, seq] = ids.dims as [number, number];
        feeds["attention_mask"] = new ort.Tensor("int64", withDummyColumn(msg.inputs["attention_mask"]!.data as BigInt64Array, batch, seq), [batch, seq + 1]);
        const pos = new BigInt64Array(batch * seq);
        for (let i = 0; i < pos.length; i++) pos[i] = BigInt(i % seq);
        feeds[kv.positionIds] = new ort.Tensor("int64", pos, [batch, seq]);
        Object.assign(feeds, dummyPast(kv, batch));
      }
      const t1 = performance.now();
      const res = await s.run(feeds, [...msg.outputs]);
      const ms = performance.now() - t1;
      const outputs: Record<string, WireTensor> = {};
      for (const name of msg.outputs) {
        const o = res[name]!;
        outputs[name] = { type: o.type as WireTensor["type"], dims: [...o.dims], data: o.data as WireTensor["data"] };
      }
      return { id: msg.id, ok: true, outputs, ms, prepMs: t1 - t0, provider };
    }
    case "prefill": {
      const layout = requireKv();
      const [batch, seq] = msg.dims;
      // Positions as transformers' generate makes them for left-padded rows: cumsum(mask) - 1, 0 at padding.
      const positions = new BigInt64Array(batch * seq);
      const nextPosition = new BigInt64Array(batch);
      for (let b = 0; b < batch; b++) {
        let n = 0n;
        for (let t = 0; t < seq; t++) {
          const real = msg.attentionMask[b * seq + t] !== 0n;
          positions[b * seq + t] = real ? n : 0n;
          if (real) n++;
        }
        nextPosition[b] = n;
      }
      const g: SequenceGroup = { adapter: msg.adapter, batch, mask: withDummyColumn(msg.attentionMask, batch, seq), columns: seq + 1, nextPosition, past: dummyPast(layout, batch) };
      groups.set(msg.seq, g);
      try {
        const { logits, ms, prepMs } = await runGroup(g, msg.inputIds, seq, positions);
        return { id: msg.id, ok: true, outputs: { logits: { type: "float32", dims: [batch, logits.length / batch], data: logits } }, ms, prepMs, provider };
      } catch (err) {
        groups.delete(msg.seq);
        throw err;
      }
    }
    case "decode": {
      const g = groups.get(msg.seq);
      if (!g) throw new Error(`sequence group ${msg.seq} is not cached in the session worker (released, or never prefilled)`);
      if (msg.tokens.length !== g.batch) throw new Error(`decode: expected ${g.batch} tokens (one per row), got ${msg.tokens.length}`);
      const mask = new BigInt64Array(g.batch * (g.columns + 1));
      for (let b = 0; b < g.batch; b++) {
        mask.set(g.mask.subarray(b * g.columns, (b + 1) * g.columns), b * (g.columns + 1));
        mask[b * (g.columns + 1) + g.columns] = 1n;
      }
      g.mask = mask;
      g.columns += 1;
      const positions = g.nextPosition.slice();
      for (let b = 0; b < g.batch; b++) g.nextPosition[b]! += 1n;
      const { logits, ms, prepMs } = await runGroup(g, msg.tokens, 1, positions);
      return { id: msg.id, ok: true, outputs: { logits: { type: "float32", dims: [g.batch, logits.length / g.batch], data: logits } }, ms, prepMs, provider };
    }
    case "release":
      groups.delete(msg.seq);
      return { id: msg.id, ok: true };
    case "close":
      await session?.release();
      session = undefined;
      adapters.clear();
      groups.clear();
      return { id: msg.id, ok: true };
  }
}

// One request at a time, in arrival order: a `close` or `setAdapter` never overtakes a run still in flight.
let queue: Promise<void> = Promise.resolve();
port.on("message", (msg: WorkerRequest) => {
  queue = queue.then(() =>
    handle(msg).then(
      (res) => {
        const transfer = res.ok && res.outputs ? Object.values(res.outputs).map((t) => t.data.buffer as ArrayBuffer) : [];
        port.postMessage(res, transfer);
        if (msg.op === "close") port.close();
      },
      (err: unknown) => port.postMessage({ id: msg.id, ok: false, error: err instanceof Error ? err.message : String(err) } satisfies WorkerResponse),
    ),
  );
});
