/** One benchmark suite's result: rows printed as a table, ratios printed against their targets. */
export interface BenchRow {
  /** What was measured, e.g. "read 1 GiB safetensors". */
  readonly name: string;
  /** The measured figure for each implementation, e.g. { loraport: 0.41, python: 0.52 }. */
  readonly values: Readonly<Record<string, number>>;
  /** Unit of `values`: "s", "ms", "µs", "GB/s". */
  readonly unit: string;
}

export interface BenchRatio {
  readonly name: string;
  /** loraport / reference (time) — lower is better — unless `higherIsBetter`. */
  readonly ratio: number;
  /** The target, e.g. 1.0 for "no slower than Python". */
  readonly target?: number;
  readonly higherIsBetter?: boolean;
  readonly note?: string;
}

export interface BenchResult {
  readonly suite: string;
  readonly rows: readonly BenchRow[];
  readonly ratios: readonly BenchRatio[];
  /** Conditions worth printing beside the figures (threads, sizes, versions). */
  readonly conditions?: Readonly<Record<string, string | number>>;
}

export interface BenchOptions {
  /** Print progress lines on stderr. */
  readonly verbose: boolean;
  /** Smaller sizes for a quick look (`--quick`). */
  readonly quick: boolean;
}

export type BenchSuite = { readonly name: string; run(opts: BenchOptions): Promise<BenchResult> };
