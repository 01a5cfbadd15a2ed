/**
 * The worker thread that owns the ONNX Runtime session. onnxruntime-node's `run` is synchronous underneath and
 * blocks its thread, so it runs here and the main thread's requests and timers keep flowing.
 * Adapters' feeds are built once (`setAdapter`) and kept; a run names one, so switching adapters costs nothing.
 */
import { parentPort } from "node:worker_threads";
import * as ort from "onnxruntime-node";
import type { ExecutionProvider } from "./providers.js";
import { BASE_ADAPTER, type WireTensor, type WorkerRequest, type WorkerResponse } from "./worker-protocol.js";

if (!parentPort) throw new Error("session-worker must run as a worker thread");
const port = parentPort;

let session: ort.InferenceSession | undefined;
let provider: ExecutionProvider = "cpu";
const adapters = new Map<string, Record<string, ort.Tensor>>();

function toOrt(t: WireTensor): ort.Tensor {
  return new ort.Tensor(t.type, t.data, [...t.dims]);
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
      if (!session) throw new Error("session not initialised");
      const t0 = performance.now();
      const feeds: Record<string, ort.Tensor> = {};
      for (const [name, t] of Object.entries(msg.inputs)) feeds[name] = toOrt(t);
      if (msg.adapter !== null) {
        // Base feeds first (rank 0, base head values), then the adapter's own: it may leave the head to the base.
        const a = adapters.get(msg.adapter);
        if (!a) throw new Error(`adapter '${msg.adapter}' is not registered in the session worker`);
        Object.assign(feeds, adapters.get(BASE_ADAPTER), a);
      }
      const t1 = performance.now();
      const res = await session.run(feeds, [...msg.outputs]);
      const ms = performance.now() - t1;
      const outputs: Record<string, WireTensor> = {};
      for (const name of msg.outputs) {
        const o = res[name]!;
        outputs[name] = { type: o.type as WireTensor["type"], dims: [...o.dims], data: o.data as WireTensor["data"] };
      }
      return { id: msg.id, ok: true, outputs, ms, prepMs: t1 - t0, provider };
    }
    case "close":
      await session?.release();
      session = undefined;
      adapters.clear();
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
