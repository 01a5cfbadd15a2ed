/**
 * Read budgets: how much memory and work a reader may spend on one file, relative to that file's size. A
 * checkpoint is untrusted input, and a small file can describe huge work (a zip bomb, a pickle that builds a
 * 100M-element list, an expanded view of a 16-byte storage), so every allocation and every unit of work that
 * does not come with file bytes of its own is charged to the budget BEFORE it happens; going over it is a
 * `ReadLimitError` naming the limit to raise. Per-structure caps alone do not work: their product is unbounded.
 *
 * Budget for a file of S bytes: `minBytes + bytesPerFileByte × S` bytes and `minOps + opsPerFileByte × S`
 * operations. A normal checkpoint spends about 1× its size in bytes (its storages; the pickle is small) and
 * a few operations per pickle byte (every opcode is at least one byte; the result is walked twice), so the
 * defaults leave a wide margin.
 */
import { ReadLimitError } from "../errors.js";

export interface ReadLimits {
  /** Bytes any file may use, however small (default 128 MiB). */
  readonly minBytes: number;
  /** Further bytes per byte of the file (default 8): decompressed entries, copies of strided views, pickle objects. */
  readonly bytesPerFileByte: number;
  /** Operations any file may use (default 4 M): pickle opcodes, the items they move, steps walking the result. */
  readonly minOps: number;
  /** Further operations per byte of the file (default 8). */
  readonly opsPerFileByte: number;
  /** Deepest nesting of lists, dicts and tuples in a checkpoint's pickle (default 1000). */
  readonly maxDepth: number;
}

export const DEFAULT_READ_LIMITS: ReadLimits = Object.freeze({
  minBytes: 128 * 2 ** 20,
  bytesPerFileByte: 8,
  minOps: 4_000_000,
  opsPerFileByte: 8,
  maxDepth: 1000,
});

/** Options shared by the readers: `limits` raises (or lowers) any of the budgets above. */
export interface ReadOptions {
  readonly limits?: Partial<ReadLimits>;
}

export function resolveLimits(limits: Partial<ReadLimits> | undefined): ReadLimits {
  return { ...DEFAULT_READ_LIMITS, ...limits };
}

/** The running account of one read: bytes and operations spent so far against the file's budget. */
export class ReadBudget {
  readonly maxBytes: number;
  readonly maxOps: number;
  readonly limits: ReadLimits;
  private bytes = 0;
  private ops = 0;

  constructor(readonly file: string, fileSize: number, limits?: Partial<ReadLimits>) {
    this.limits = resolveLimits(limits);
    this.maxBytes = this.limits.minBytes + this.limits.bytesPerFileByte * fileSize;
    this.maxOps = this.limits.minOps + this.limits.opsPerFileByte * fileSize;
  }

  /** Spend `n` bytes on `what`; throws before the caller allocates when the budget would be exceeded. */
  charge(n: number, what: string): void {
    if (!(n <= this.maxBytes - this.bytes)) {
      throw new ReadLimitError(
        this.file,
        `${what} needs ${n} bytes, over this file's memory budget (${this.bytes} of ${this.maxBytes} bytes used; ` +
          `raise limits.bytesPerFileByte or limits.minBytes if the file is trusted)`,
        "bytesPerFileByte",
      );
    }
    this.bytes += n;
  }

  /** Spend `n` operations; `what` is evaluated only on failure. */
  step(n: number, what: () => string): void {
    this.ops += n;
    if (this.ops > this.maxOps) {
      throw new ReadLimitError(
        this.file,
        `${what()}: more than ${this.maxOps} operations for this file (raise limits.opsPerFileByte or limits.minOps if the file is trusted)`,
        "opsPerFileByte",
      );
    }
  }

  get bytesUsed(): number {
    return this.bytes;
  }

  get opsUsed(): number {
    return this.ops;
  }
}
