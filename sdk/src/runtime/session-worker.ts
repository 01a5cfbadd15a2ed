/**
 * The worker thread that owns the ONNX Runtime session. onnxruntime-node's `run` is synchronous underneath and
 * blocks its thread, so it runs here and the main thread's requests and timers keep flowing.
 * Adapters' feeds are built once (`setAdapter`) and kept; a run names one, so switching adapters costs nothing.
 * KV caches of cached sequence groups (`prefill`/`decode`) stay here too: `present` outputs are fed back as the
 * next step's `past` without ever crossing to the main thread; only the last position's logits do.
 * An adapter-inputs graph takes every adapter's factors as tables (one slot per adapter, ranks zero-padded) and each
 * row's slot: the tables are rebuilt here when adapters change, so a batch can mix adapters at no per-step cost.
 */
import { parentPort } from "node:worker_threads";
import * as ort from "onnxruntime-node";
import type { ExecutionProvider } from "./providers.js";
import { BASE_ADAPTER, type WireTensor, type WorkerKvLayout, type WorkerLoraLayout, type WorkerRequest, type WorkerResponse } from "./worker-protocol.js";

if (!parentPort) throw new Error("session-worker must run as a worker thread");
const port = parentPort;

let session: ort.InferenceSession | undefined;
let provider: ExecutionProvider = "cpu";
let kv: WorkerKvLayout | undefined;
let lora: WorkerLoraLayout | undefined;
/** Each adapter's own feeds as registered: factors `A [r, in]`, `B [out, r]` by input name, and head tensors. */
const adapters = new Map<string, Record<string, ort.Tensor>>();
/** The factor tables built from `adapters` (slot 0 = the base), rebuilt when an adapter comes or goes. */
let tables: { readonly slotOf: Map<string, number>; readonly feeds: Record<string, ort.Tensor>; readonly heads: Map<string, Record<string, ort.Tensor>> } | undefined;

/** A cached sequence group: its adapter, the mask over [dummy slot, prompt, generated], next positions, the cache. */
interface SequenceGroup {
  readonly rows: readonly string[] | null;
  readonly batch: number;
  /** Columns of the mask = the cache's past length (the dummy slot included until trimmed). */
  mask: BigInt64Array;
  columns: number;
  readonly nextPosition: BigInt64Array;
  past: Record<string, ort.Tensor>;
}
const groups = new Map<number, SequenceGroup>();

function toOrt(t: WireTensor): ort.Tensor {
  return new ort.Tensor(t.type, t.data, [...t.dims]);
}

function buildTables(layout: WorkerLoraLayout): NonNullable<typeof tables> {
  const names = [BASE_ADAPTER, ...[...adapters.keys()].filter((n) => n !== BASE_ADAPTER)];
  const slotOf = new Map(names.map((n, i) => [n, i]));
  const feeds: Record<string, ort.Tensor> = {};
  for (const m of layout.modules) {
    const rank = (n: string): number => adapters.get(n)?.[m.a]?.dims[0] ?? 0;
    // At least rank 1 (zeros): ORT's batched MatMul over an empty inner dimension is not reliably zero.
    const r = Math.max(1, ...names.map(rank));
    const a = new Float32Array(names.length * r * m.in);
    const b = new Float32Array(names.length * m.out * r);
    names.forEach((n, slot) => {
      const f = adapters.get(n);
      const rn = rank(n);
      if (!f || rn === 0) return;
      // A [rn, in] fills the slot's first rn rows; B [out, rn] the first rn columns of each of its rows.
      a.set(f[m.a]!.data as Float32Array, slot * r * m.in);
      const src = f[m.b]!.data as Float32Array;
      for (let o = 0; o < m.out; o++) b.set(src.subarray(o * rn, (o + 1) * rn), (slot * m.out + o) * r);
    });
    feeds[m.a] = new ort.Tensor("float32", a, [names.length, r, m.in]);
    feeds[m.b] = new ort.Tensor("float32", b, [names.length, m.out, r]);
  }
  for (const t of layout.tokens ?? []) {
    const count = (n: string): number => adapters.get(n)?.[t.ids]?.dims[0] ?? 0;
    // At least one id per slot (-1 matches no token), as the rank is at least 1 above.
    const n = Math.max(1, ...names.map(count));
    const ids = new BigInt64Array(names.length * n).fill(-1n);
    const rows = new Float32Array(names.length * n * t.dim);
    names.forEach((name, slot) => {
      const f = adapters.get(name);
      if (!f || count(name) === 0) return;
      ids.set(f[t.ids]!.data as BigInt64Array, slot * n);
      rows.set(f[t.rows]!.data as Float32Array, slot * n * t.dim);
    });
    feeds[t.ids] = new ort.Tensor("int64", ids, [names.length, n]);
    feeds[t.rows] = new ort.Tensor("float32", rows, [names.length, n, t.dim]);
  }
  // Each adapter's whole-tensor heads (what is not a LoRA factor or token table), sorted out once here, not per step.
  const factor = new Set([...layout.modules.flatMap((m) => [m.a, m.b]), ...(layout.tokens ?? []).flatMap((t) => [t.ids, t.rows])]);
  const heads = new Map(names.map((n) => [n, Object.fromEntries(Object.entries(adapters.get(n) ?? {}).filter(([k]) => !factor.has(k)))]));
  return { slotOf, feeds, heads };
}

/** The LoRA feeds for a batch whose rows use `rows` (adapter names): the tables, the row slots, the heads. */
function adapterFeeds(rows: readonly string[] | null): Record<string, ort.Tensor> {
  if (rows === null || !lora) return {};
  tables ??= buildTables(lora);
  const t = tables;
  const index = new BigInt64Array(rows.length);
  rows.forEach((name, i) => {
    const slot = t.slotOf.get(name);
    if (slot === undefined) throw new Error(`adapter '${name}' is not registered in the session worker`);
    index[i] = BigInt(slot);
  });
  // Whole-tensor heads (a classifier saved whole) cannot differ per row: one adapter's or the base's for the batch.
  const distinct = [...new Set(rows)];
  const headsOf = (n: string): Record<string, ort.Tensor> => t.heads.get(n) ?? {};
  const heads = { ...headsOf(BASE_ADAPTER), ...(distinct.length === 1 ? headsOf(distinct[0]!) : {}) };
  if (distinct.length > 1 && distinct.some((n) => Object.keys(headsOf(n)).length > 0 && n !== BASE_ADAPTER)) {
    throw new Error(`a batch mixing adapters (${distinct.filter((n) => n !== BASE_ADAPTER).join(", ")}) where one brings its own head tensors: run those rows separately`);
  }
  return { ...t.feeds, ...heads, [lora.index]: new ort.Tensor("int64", index, [rows.length]) };
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

/** Where one output row's cache and mask come from: a group's row, minus its first `skip` columns. */
interface RowSource {
  readonly g: SequenceGroup;
  readonly row: number;
  readonly skip: number;
}

/**
 * A new cache and mask from rows of existing groups, right-aligned (every row's last column is the newest token)
 * to `columns`, zeros and mask 0 on the left. Copies each row's cache once: paid when rows join or leave, never
 * per step.
 */
function regroup(sources: readonly RowSource[], columns: number, rows: readonly string[] | null): SequenceGroup {
  const layout = requireKv();
  const batch = sources.length;
  const { kvHeads: h, headDim: d } = layout;
  const mask = new BigInt64Array(batch * columns);
  const nextPosition = new BigInt64Array(batch);
  const past: Record<string, ort.Tensor> = {};
  for (const name of layout.past) past[name] = new ort.Tensor("float32", new Float32Array(batch * h * columns * d), [batch, h, columns, d]);
  sources.forEach(({ g, row, skip }, r) => {
    const keep = g.columns - skip;
    const at = columns - keep;
    mask.set(g.mask.subarray(row * g.columns + skip, (row + 1) * g.columns), r * columns + at);
    nextPosition[r] = g.nextPosition[row]!;
    for (const name of layout.past) {
      const src = g.past[name]!.data as Float32Array;
      const dst = past[name]!.data as Float32Array;
      for (let head = 0; head < h; head++) {
        const from = ((row * h + head) * g.columns + skip) * d;
        dst.set(src.subarray(from, from + keep * d), ((r * h + head) * columns + at) * d);
      }
    }
  });
  return { rows, batch, mask, columns, nextPosition, past };
}

/** Columns at the left that are masked out for every kept row (padding of rows that have left). */
function unusedLeft(g: SequenceGroup, keep: readonly number[]): number {
  let skip = g.columns - 1;
  for (const row of keep) {
    let first = 0;
    while (first < g.columns && g.mask[row * g.columns + first] === 0n) first++;
    skip = Math.min(skip, first);
  }
  return Math.max(0, skip);
}

function requireGroup(seq: number): SequenceGroup {
  const g = groups.get(seq);
  if (!g) throw new Error(`sequence group ${seq} is not cached in the session worker (released, or never prefilled)`);
  return g;
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
    ...adapterFeeds(g.rows),
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
      lora = msg.lora;
      // Creation fails outright when a listed provider cannot be appended, so the first one is the one that runs.
      provider = msg.providers[0] ?? "cpu";
      return { id: msg.id, ok: true, inputNames: session.inputNames, outputNames: session.outputNames, provider };
    }
    case "setAdapter": {
      const feeds: Record<string, ort.Tensor> = {};
      for (const [name, t] of Object.entries(msg.feeds)) feeds[name] = toOrt(t);
      adapters.set(msg.name, feeds);
      tables = undefined;
      return { id: msg.id, ok: true };
    }
    case "dropAdapter":
      adapters.delete(msg.name);
      tables = undefined;
      return { id: msg.id, ok: true };
    case "run": {
      const s = requireSession();
      const t0 = performance.now();
      const feeds: Record<string, ort.Tensor> = { ...adapterFeeds(msg.rows) };
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
      const g: SequenceGroup = { rows: msg.rows, batch, mask: withDummyColumn(msg.attentionMask, batch, seq), columns: seq + 1, nextPosition, past: dummyPast(layout, batch) };
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
      const g = requireGroup(msg.seq);
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
    case "merge": {
      const a = requireGroup(msg.into);
      const b = requireGroup(msg.from);
      if ((a.rows === null) !== (b.rows === null)) throw new Error("merge: groups of different kinds");
      const sources = [...Array.from({ length: a.batch }, (_, row) => ({ g: a, row, skip: 0 })), ...Array.from({ length: b.batch }, (_, row) => ({ g: b, row, skip: 0 }))];
      groups.set(msg.into, regroup(sources, Math.max(a.columns, b.columns), a.rows && b.rows ? [...a.rows, ...b.rows] : null));
      groups.delete(msg.from);
      return { id: msg.id, ok: true };
    }
    case "keepRows": {
      const g = requireGroup(msg.seq);
      if (msg.keep.some((r) => !Number.isInteger(r) || r < 0 || r >= g.batch)) throw new Error(`keepRows: rows must be in [0, ${g.batch})`);
      if (msg.keep.length === 0) {
        groups.delete(msg.seq);
        return { id: msg.id, ok: true };
      }
      const skip = unusedLeft(g, msg.keep);
      groups.set(msg.seq, regroup(msg.keep.map((row) => ({ g, row, skip })), g.columns - skip, g.rows ? msg.keep.map((r) => g.rows![r]!) : null));
      return { id: msg.id, ok: true };
    }
    case "close":
      await session?.release();
      session = undefined;
      adapters.clear();
      tables = undefined;
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
