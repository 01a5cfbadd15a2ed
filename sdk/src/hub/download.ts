/**
 * Downloading a model from the Hugging Face Hub into the local cache with @huggingface/hub, in the layout
 * huggingface_hub writes (`blobs/`, `snapshots/<commit>/` links, `refs/<revision>`), so transformers and the
 * next loraport run find it offline. Only the files a model folder needs (model-files.ts) are fetched.
 */
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { ProgressCallback } from "../progress.js";
import { repoCacheFolder } from "./cache-dir.js";
import { type HubId } from "./hub-id.js";
import { selectModelFiles, type RepoFile } from "./model-files.js";

export interface DownloadOptions {
  readonly cacheDir: string;
  /** The Hub's address; default `$HF_ENDPOINT`, else https://huggingface.co. */
  readonly hubUrl?: string;
  /** Default `$HF_TOKEN`. */
  readonly accessToken?: string;
  readonly onProgress?: ProgressCallback | undefined;
  /** How long to wait for a response's headers before calling the network unreachable. */
  readonly connectTimeoutMs?: number;
}

/**
 * A fetch that gives up when no response headers arrive in time (an unreachable Hub must not hang a CLI), and
 * counts body bytes as they stream so downloads report progress.
 */
function watchedFetch(timeoutMs: number, onBytes: (n: number) => void): typeof fetch {
  return async (input, init) => {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(new Error(`no answer in ${timeoutMs / 1000} s`)), timeoutMs);
    const signal = init?.signal ? AbortSignal.any([init.signal, ctl.signal]) : ctl.signal;
    let res: Response;
    try {
      res = await fetch(input, { ...init, signal });
    } finally {
      clearTimeout(timer);
    }
    if (!res.body) return res;
    const counted = res.body.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, out) {
        onBytes(chunk.byteLength);
        out.enqueue(chunk);
      },
    }));
    return new Response(counted, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}

/** Download `id` and return its snapshot folder. Network failures surface as the fetch's own errors. */
export async function downloadModel(id: HubId, options: DownloadOptions): Promise<string> {
  const hubUrl = options.hubUrl ?? (process.env["HF_ENDPOINT"] || undefined);
  const accessToken = options.accessToken ?? (process.env["HF_TOKEN"] || undefined);
  const common = { ...(hubUrl ? { hubUrl } : {}), ...(accessToken ? { accessToken } : {}) };
  let current: RepoFile | undefined;
  let done = 0;
  let inFile = 0;
  let total = 0;
  const report = (): void => options.onProgress?.({ phase: "download", done: done + Math.min(inFile, current?.size ?? 0), total, unit: "bytes", ...(current ? { message: current.path } : {}) });
  const fetch = watchedFetch(options.connectTimeoutMs ?? 30_000, (n) => {
    if (!current) return;
    inFile += n;
    report();
  });

  // Loaded on first use: most runs never touch the network, and the CLI starts faster without it.
  const { downloadFileToCacheDir, listFiles, modelInfo } = await import("@huggingface/hub");
  const info = await modelInfo({ ...common, name: id.repo, revision: id.revision, additionalFields: ["sha"], fetch });
  const commit = info.sha;
  const files: RepoFile[] = [];
  for await (const f of listFiles({ ...common, repo: { type: "model", name: id.repo }, revision: commit, fetch })) {
    if (f.type === "file") files.push({ path: f.path, size: f.size });
  }
  const wanted = selectModelFiles(files);
  total = wanted.reduce((s, f) => s + f.size, 0);
  // @huggingface/hub logs each file with console.debug, which is stdout in Node: keep stdout for the caller's output.
  const debug = console.debug;
  console.debug = () => {};
  try {
    for (const f of wanted) {
      current = f;
      inFile = 0;
      report();
      await downloadFileToCacheDir({ ...common, repo: { type: "model", name: id.repo }, path: f.path, revision: commit, cacheDir: options.cacheDir, fetch });
      done += f.size;
      inFile = 0;
    }
  } finally {
    console.debug = debug;
  }
  current = undefined;
  report();
  if (id.revision !== commit) {
    // The ref is what lets transformers (local_files_only) and later runs resolve a branch or tag offline.
    const ref = join(repoCacheFolder(options.cacheDir, id.repo), "refs", id.revision);
    mkdirSync(dirname(ref), { recursive: true });
    writeFileSync(`${ref}.tmp`, commit);
    renameSync(`${ref}.tmp`, ref);
  }
  const snapshot = join(repoCacheFolder(options.cacheDir, id.repo), "snapshots", commit);
  mkdirSync(snapshot, { recursive: true });
  return snapshot;
}
