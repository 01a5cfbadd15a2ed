/** One step of `loraport demo`. Each capability adds its own step file; demo.ts runs them in order. */
export interface DemoContext {
  /** A scratch folder for this demo run (removed afterwards unless --keep). */
  readonly workDir: string;
  /** Print a line of the demo's story. */
  log(line: string): void;
  /** Values a step leaves for later steps (e.g. the path of a written adapter). */
  readonly shared: Map<string, unknown>;
}

export interface DemoStep {
  readonly title: string;
  run(ctx: DemoContext): Promise<void>;
}
