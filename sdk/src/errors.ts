/**
 * One error hierarchy for all of loraport. Every error a user can meet is a subclass of
 * `LoraportError` with a stable `code`, so callers branch on `instanceof` or `code`, never on text.
 * Messages name the file, key or field and what was expected.
 */
export class LoraportError extends Error {
  /** Stable machine-readable code, e.g. `E_FORMAT`. */
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

// ---- files and formats -------------------------------------------------------------------------

/** A file's bytes do not match its format (safetensors, torch zip, pickle, JSON config). */
export class FormatError extends LoraportError {
  /** The file that was being read. */
  readonly file: string;
  constructor(file: string, message: string, options?: ErrorOptions & { code?: string }) {
    super(options?.code ?? "E_FORMAT", `${file}: ${message}`, options);
    this.file = file;
  }
}

/** A pickle asked for a global outside the allowlist (what `torch.load(weights_only=True)` admits). */
export class UnsafePickleError extends FormatError {
  /** `module.name` of the refused global. */
  readonly global: string;
  constructor(file: string, global: string) {
    super(file, `refused pickle global '${global}': only tensor-rebuilding globals are allowed (as torch.load(weights_only=True))`, { code: "E_UNSAFE_PICKLE" });
    this.global = global;
  }
}

/** A file or folder that was expected is not there. */
export class FileMissingError extends LoraportError {
  readonly file: string;
  constructor(file: string, message?: string) {
    super("E_FILE_MISSING", message ?? `${file}: no such file`);
    this.file = file;
  }
}

/** A Hugging Face Hub id (`org/name[@revision]`) that is neither a folder, nor in the local cache, nor downloadable now. */
export class HubModelMissingError extends FileMissingError {
  /** The id as given, e.g. `openai-community/gpt2@main`. */
  readonly id: string;
  /** The cache folder that was looked in. */
  readonly cacheDir: string;
  constructor(id: string, cacheDir: string, message: string) {
    super(id, message);
    this.id = id;
    this.cacheDir = cacheDir;
  }
}

/** An output path is, lies inside, or contains one of the inputs (after symlinks and hard links): refused, inputs are never overwritten. */
export class OutputIsInputError extends LoraportError {
  /** The output flag and path, e.g. `--out`. */
  readonly outputFlag: string;
  readonly output: string;
  /** The input flag (or argument name) and path it collides with. */
  readonly inputFlag: string;
  readonly input: string;
  constructor(outputFlag: string, output: string, inputFlag: string, input: string, how: string) {
    super("E_OUTPUT_IS_INPUT", `${outputFlag} ${output} ${how} ${inputFlag} ${input}; outputs never replace inputs: choose another ${outputFlag}`);
    this.outputFlag = outputFlag;
    this.output = output;
    this.inputFlag = inputFlag;
    this.input = input;
  }
}

// ---- adapters ----------------------------------------------------------------------------------

/** An adapter config or state dict that loraport cannot use as asked. */
export class AdapterError extends LoraportError {
  constructor(message: string, options?: ErrorOptions & { code?: string }) {
    super(options?.code ?? "E_ADAPTER", message, options);
  }
}

/** A PEFT feature loraport does not implement; refused rather than applied wrongly. */
export class UnsupportedFeatureError extends AdapterError {
  /** The config key (or feature) that was refused. */
  readonly key: string;
  constructor(key: string, message: string) {
    super(`${key}: ${message}`, { code: "E_UNSUPPORTED" });
    this.key = key;
  }
}

/** A base model and an adapter disagree (missing module, shape or rank). */
export class ShapeMismatchError extends AdapterError {
  readonly module: string;
  readonly expected: readonly number[] | undefined;
  readonly actual: readonly number[] | undefined;
  constructor(module: string, message: string, expected?: readonly number[], actual?: readonly number[]) {
    super(`${module}: ${message}`, { code: "E_SHAPE" });
    this.module = module;
    this.expected = expected;
    this.actual = actual;
  }
}

/** A computation produced NaN or Inf while the caller asked for safe mode. */
export class NonFiniteError extends AdapterError {
  readonly module: string;
  constructor(module: string) {
    super(`${module}: merged weight has non-finite values (safe mode)`, { code: "E_NONFINITE" });
    this.module = module;
  }
}

// ---- the sidecar bridge ------------------------------------------------------------------------

/** Base class of everything that goes wrong talking to the Python sidecar. */
export class SidecarError extends LoraportError {}

/** Python raised; `pyType` and `pyTraceback` are the remote exception's. */
export class RemoteError extends SidecarError {
  readonly pyType: string;
  readonly pyTraceback: readonly string[];
  readonly requestId: number | undefined;
  constructor(pyType: string, message: string, pyTraceback: readonly string[], requestId?: number) {
    super("E_REMOTE", `${pyType}: ${message}`);
    this.pyType = pyType;
    this.pyTraceback = pyTraceback;
    this.requestId = requestId;
  }
}

/** A call passed its deadline. */
export class TimeoutError extends SidecarError {
  constructor(message: string) {
    super("E_TIMEOUT", message);
  }
}

/** A call was cancelled through its `AbortSignal`. */
export class CancelledError extends SidecarError {
  constructor(message = "call cancelled") {
    super("E_CANCELLED", message);
  }
}

/** The sidecar process ended; pending calls reject with this. */
export class SidecarExitedError extends SidecarError {
  readonly exitCode: number | undefined;
  readonly signal: string | undefined;
  readonly stderrTail: string;
  constructor(message: string, exitCode: number | undefined, signal: string | undefined, stderrTail: string, code = "E_SIDECAR_EXITED") {
    super(code, message);
    this.exitCode = exitCode;
    this.signal = signal;
    this.stderrTail = stderrTail;
  }
}

/** A message broke the wire protocol (bad frame count, schema violation, oversized message). */
export class ProtocolError extends SidecarError {
  constructor(message: string) {
    super("E_PROTOCOL", message);
  }
}

// ---- runtime -----------------------------------------------------------------------------------

/** ONNX Runtime could not do what was asked (provider missing, bad model folder, bad inputs). */
export class RuntimeError extends LoraportError {
  constructor(message: string, options?: ErrorOptions & { code?: string }) {
    super(options?.code ?? "E_RUNTIME", message, options);
  }
}

// ---- serving -----------------------------------------------------------------------------------

/** The server's queue is full: the caller should retry later (HTTP 429). */
export class OverloadedError extends LoraportError {
  constructor(message: string) {
    super("E_OVERLOADED", message);
  }
}

// ---- arguments ---------------------------------------------------------------------------------

/** A public function was called with an argument it cannot use. `argument` names it as the caller wrote it. */
export class ArgumentError extends LoraportError {
  /** The argument (or the path inside it), e.g. `params.a.b`, `inputs.inputIds[2][0]`, `tensors[1].data`. */
  readonly argument: string;
  constructor(argument: string, expected: string, options?: ErrorOptions) {
    super("E_ARGUMENT", `${argument}: ${expected}`, options);
    this.argument = argument;
  }
}

/**
 * The Python environment tried for the sidecar cannot run it (no such interpreter, or a package it needs is
 * missing). Says which interpreter was tried, where that choice came from, and how to make the right one.
 */
export class SidecarEnvironmentError extends SidecarExitedError {
  /** The interpreter that was tried. */
  readonly python: string;
  /** The Python module it lacked (`zmq`, `torch`, …), when that was the problem. */
  readonly missingModule: string | undefined;
  constructor(message: string, python: string, missingModule: string | undefined, exit: { exitCode?: number | undefined; signal?: string | undefined; stderrTail?: string }) {
    super(message, exit.exitCode, exit.signal, exit.stderrTail ?? "", "E_SIDECAR_ENV");
    this.python = python;
    this.missingModule = missingModule;
  }
}

// ---- limits and outputs (formats) -------------------------------------------------------------

/** A file would make a reader exceed its budget (memory, operations, nesting); `limit` names the `ReadLimits` field to raise. */
export class ReadLimitError extends FormatError {
  /** The `ReadLimits` field that was exceeded, e.g. `bytesPerFileByte`. */
  readonly limit: string;
  constructor(file: string, message: string, limit: string) {
    super(file, message, { code: "E_READ_LIMIT" });
    this.limit = limit;
  }
}

/** An output file could not be written (no space, a folder in the way, missing parent, permissions). */
export class OutputWriteError extends LoraportError {
  /** The output path that could not be written. */
  readonly output: string;
  /** The operating system's error code (`ENOSPC`, `EISDIR`, ...), when there was one. */
  readonly osCode: string | undefined;
  constructor(output: string, reason: string, osCode?: string, options?: ErrorOptions) {
    super("E_OUTPUT_WRITE", `cannot write ${output}: ${reason}`, options);
    this.output = output;
    this.osCode = osCode;
  }
}

/** A distributed (torch engine) training run failed: a rank died or raised; the message names the rank and the last intact checkpoint. */
export class DistributedTrainingError extends LoraportError {
  /** The rank that failed first, when torchrun reported it. */
  readonly rank: number | undefined;
  constructor(message: string, rank?: number) {
    super("E_WORKER_FAILED", message);
    this.rank = rank;
  }
}
