/**
 * The safetensors header: parsed and validated as the safetensors library does, each failure a
 * FormatError naming the file and the problem. What counts as safetensors is decided here once, for every
 * reader and for format detection, as Python's `safetensors` decides it: the header is the JSON text after the
 * 8-byte length, JSON whitespace (space, tab, CR, LF) may come before the `{`, a UTF-8 BOM may not, and JSON
 * nested deeper than 127 levels is refused (serde_json's recursion limit).
 */
import { FormatError } from "../../errors.js";
import { isDType, itemsize, type DType } from "../../tensor/dtype.js";
import { numel } from "../../tensor/tensor-impl.js";
import { ReadBudget } from "../limits.js";

/** Headers above this are refused (the safetensors library's own cap). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsEntry {
  name: string;
  dtype: DType;
  shape: number[];
  /** Absolute position of the first byte in `file`. */
  byteOffset: number;
  byteLength: number;
  file: string;
}

export interface ParsedHeader {
  /** Entries in header order. */
  readonly entries: SafetensorsEntry[];
  readonly metadata: Record<string, string>;
  /** 8 + header length: where the data section starts. */
  readonly dataStart: number;
}

/** Validate the 8-byte length prefix against the file size; returns the header length. */
export function headerLength(file: string, prefix: Uint8Array, fileSize: number): number {
  if (fileSize < 8) throw new FormatError(file, `not a safetensors file: ${fileSize} bytes, shorter than the 8-byte header length`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) throw new FormatError(file, `safetensors header length ${n} is above the ${MAX_HEADER_BYTES}-byte cap`);
  if (n > BigInt(fileSize - 8)) throw new FormatError(file, `safetensors header length ${n} runs past the end of the file (${fileSize} bytes)`);
  if (n < 2n) throw new FormatError(file, `safetensors header length ${n} is too short for a JSON object`);
  return Number(n);
}

/** Deepest JSON nesting the safetensors library parses (serde_json's recursion limit, measured: 127 passes, 128 fails). */
export const MAX_HEADER_DEPTH = 127;

/** JSON whitespace, which serde_json (and JSON.parse) skip before the first token. */
export function isJsonSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;
}

// ignoreBOM keeps a leading BOM in the text, so JSON.parse refuses it as serde_json does (the default strips it).
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Parse and validate the JSON header; `fileSize` is the whole file's size. */
export function parseHeader(file: string, headerBytes: Uint8Array, fileSize: number, budget: ReadBudget = new ReadBudget(file, fileSize)): ParsedHeader {
  let text: string;
  try {
    text = utf8.decode(headerBytes);
  } catch {
    throw new FormatError(file, "safetensors header is not valid UTF-8");
  }
  if (text.charCodeAt(0) === 0xfeff) throw new FormatError(file, "safetensors header starts with a UTF-8 byte-order mark, which the safetensors library refuses");
  // Before JSON.parse: refuse what Python refuses (deep nesting) and charge what parsing will allocate.
  const shape = scanJson(text);
  if (shape.maxDepth > MAX_HEADER_DEPTH) {
    throw new FormatError(file, `safetensors header nests ${shape.maxDepth} levels deep; the safetensors library parses at most ${MAX_HEADER_DEPTH}`);
  }
  budget.charge(2 * text.length + 64 * shape.containers + 16 * shape.items, "safetensors header");
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new FormatError(file, `safetensors header is not JSON (${(err as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new FormatError(file, "safetensors header is not a JSON object");
  }
  // JSON.parse keeps the last of duplicate keys silently; the raw text tells us whether there were any.
  const duplicate = firstDuplicateTopLevelKey(text);
  if (duplicate !== undefined) throw new FormatError(file, `safetensors header names tensor ${quoted(duplicate)} more than once`);

  const dataStart = 8 + headerBytes.byteLength;
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const entries: SafetensorsEntry[] = [];
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (raw === null) continue;
      if (typeof raw !== "object" || Array.isArray(raw)) throw new FormatError(file, "__metadata__ is not an object of strings");
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== "string") throw new FormatError(file, `__metadata__ value for ${quoted(k)} is ${jsonType(v)}, expected a string`);
        metadata[k] = v;
      }
      continue;
    }
    entries.push(parseEntry(file, name, raw, dataStart));
  }
  checkCoverage(file, entries, dataStart, dataSize);
  return { entries, metadata, dataStart };
}

function parseEntry(file: string, name: string, raw: unknown, dataStart: number): SafetensorsEntry {
  const where = `tensor ${quoted(name)}`;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new FormatError(file, `${where}: entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (!isDType(dtype)) throw new FormatError(file, `${where}: unknown dtype ${preview(dtype)}`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
    throw new FormatError(file, `${where}: shape ${preview(shape)} is not a list of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)) {
    throw new FormatError(file, `${where}: data_offsets ${preview(offsets)} is not [begin, end]`);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) throw new FormatError(file, `${where}: data_offsets [${begin}, ${end}] are out of order (end before begin)`);
  let n: number;
  try {
    n = numel(shape as number[]);
  } catch {
    throw new FormatError(file, `${where}: shape ${preview(shape)} has too many elements`);
  }
  const expected = n * itemsize(dtype);
  if (end - begin !== expected) {
    throw new FormatError(file, `${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes, but ${dtype} ${preview(shape)} needs ${expected}`);
  }
  return { name, dtype, shape: [...(shape as number[])], byteOffset: dataStart + begin, byteLength: end - begin, file };
}

/** Tensors must tile the data section exactly: no gap, no overlap, nothing left over. */
function checkCoverage(file: string, entries: readonly SafetensorsEntry[], dataStart: number, dataSize: number): void {
  const sorted = [...entries].sort((a, b) => a.byteOffset - b.byteOffset || a.byteLength - b.byteLength);
  let pos = 0;
  let prev: SafetensorsEntry | undefined;
  for (const e of sorted) {
    const begin = e.byteOffset - dataStart;
    if (begin < pos) throw new FormatError(file, `tensor ${quoted(e.name)} (data_offsets begin ${begin}) overlaps tensor ${quoted(prev?.name ?? "")} (ends at ${pos})`);
    if (begin > pos) throw new FormatError(file, `gap in the data section: bytes ${pos}..${begin} belong to no tensor (before ${quoted(e.name)})`);
    pos = begin + e.byteLength;
    prev = e;
  }
  if (pos !== dataSize) {
    throw new FormatError(file, pos < dataSize
      ? `tensors cover ${pos} of the ${dataSize} data bytes: ${dataSize - pos} trailing bytes belong to no tensor`
      : `tensor data ends at byte ${pos} of the data section, past the end of the file (${dataSize} data bytes)`);
  }
}

function jsonType(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "a list" : typeof v === "object" ? "an object" : `a ${typeof v}`;
}

/** A tensor or key name in quotes, cut short: names come from the file and can be megabytes long. */
export function quoted(name: string): string {
  return `'${name.length > 120 ? `${name.slice(0, 120)}…` : name}'`;
}

/**
 * A short, bounded description of a header value for error messages. Never `JSON.stringify` of the whole value:
 * it can be huge, and a deeply nested one overflows the call stack.
 */
export function preview(v: unknown, depth = 2): string {
  if (v === undefined) return "(missing)";
  if (typeof v === "string") return JSON.stringify(v.length > 64 ? `${v.slice(0, 64)}…` : v);
  if (typeof v !== "object" || v === null) return String(v);
  if (depth === 0) return Array.isArray(v) ? "[…]" : "{…}";
  if (Array.isArray(v)) return `[${v.slice(0, 8).map((x) => preview(x, depth - 1)).join(", ")}${v.length > 8 ? `, … (${v.length} items)` : ""}]`;
  const keys = Object.keys(v);
  return `{${keys.slice(0, 4).map((k) => `${preview(k)}: ${preview((v as Record<string, unknown>)[k], depth - 1)}`).join(", ")}${keys.length > 4 ? ", …" : ""}}`;
}

/**
 * One pass over (possibly invalid) JSON text: the deepest nesting and how many containers and items it holds.
 * Strings are skipped with their escapes; an unterminated one ends the scan (JSON.parse then says why).
 */
export function scanJson(text: string): { maxDepth: number; containers: number; items: number } {
  let depth = 0;
  let maxDepth = 0;
  let containers = 0;
  let items = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (j < text.length && text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      i = j;
      items++;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++depth > maxDepth) maxDepth = depth;
      containers++;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    } else if (c === 0x2c /* , */) {
      items++;
    }
  }
  return { maxDepth, containers, items };
}

/** Scan the header text for a top-level key that occurs twice (strings and nesting tracked; text is valid JSON). */
function firstDuplicateTopLevelKey(text: string): string | undefined {
  const seen = new Set<string>();
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      if (depth === 1 && expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (seen.has(key)) return key;
        seen.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      depth++;
      expectKey = depth === 1;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    } else if (c === 0x2c /* , */ && depth === 1) {
      expectKey = true;
    }
  }
  return undefined;
}
