/**
 * A small, strict zip reader for torch.save archives: the central directory (zip64 included) is read and
 * every offset and length checked against the file before use. Stored entries are read by offset;
 * deflated ones are inflated with node:zlib and CRC-checked. Nothing is extracted to disk. Every entry's
 * declared size is charged to the file's `ReadBudget` before it is read or inflated (zip bombs, and several
 * directory entries pointing at the same data, cost their full size up front).
 */
import type { FileHandle } from "node:fs/promises";
import { crc32, inflateRawSync } from "node:zlib";
import { FormatError } from "../../errors.js";
import { readExactly } from "../atomic-file.js";
import { ReadBudget } from "../limits.js";

export interface ZipEntry {
  readonly name: string;
  /** 0 = stored, 8 = deflated. */
  readonly method: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly crc: number;
  /** Offset of the local file header. */
  readonly localOffset: number;
}

const EOCD_SIG = 0x06054b50;
const EOCD64_LOCATOR_SIG = 0x07064b50;
const EOCD64_SIG = 0x06064b50;
const CDIR_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
/** More entries than this is not a checkpoint; refuse rather than allocate without bound. */
const MAX_ENTRIES = 1_000_000;

export class ZipArchive {
  private constructor(
    readonly file: string,
    private readonly fh: FileHandle,
    readonly entries: ReadonlyMap<string, ZipEntry>,
    private readonly fileSize: number,
    private readonly budget: ReadBudget,
  ) {}

  static async open(file: string, fh: FileHandle, fileSize: number, budget: ReadBudget = new ReadBudget(file, fileSize)): Promise<ZipArchive> {
    const bad = (msg: string): never => {
      throw new FormatError(file, `bad zip archive: ${msg}`);
    };
    // The end-of-central-directory record sits in the last 22 + up to 65535 (comment) bytes.
    const tailLen = Math.min(fileSize, 22 + 65535);
    const tail = await readExactly(fh, fileSize - tailLen, tailLen, file);
    const tv = view(tail);
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tv.getUint32(i, true) === EOCD_SIG && i + 22 + tv.getUint16(i + 20, true) <= tailLen) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) bad("no end-of-central-directory record");
    let count = tv.getUint16(eocd + 10, true);
    let cdSize = tv.getUint32(eocd + 12, true);
    let cdOffset = tv.getUint32(eocd + 16, true);
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      // zip64: a locator just before the EOCD points to the zip64 EOCD record.
      const loc = eocd - 20;
      if (loc < 0 || tv.getUint32(loc, true) !== EOCD64_LOCATOR_SIG) bad("zip64 sizes without a zip64 locator");
      const rec = safe(tv.getBigUint64(loc + 8, true), "zip64 record offset", bad);
      if (rec + 56 > fileSize) bad("zip64 end record beyond the end of the file");
      const r = view(await readExactly(fh, rec, 56, file));
      if (r.getUint32(0, true) !== EOCD64_SIG) bad("zip64 end record signature missing");
      count = safe(r.getBigUint64(32, true), "entry count", bad);
      cdSize = safe(r.getBigUint64(40, true), "central directory size", bad);
      cdOffset = safe(r.getBigUint64(48, true), "central directory offset", bad);
    }
    if (count > MAX_ENTRIES) bad(`${count} entries (more than ${MAX_ENTRIES})`);
    if (cdOffset + cdSize > fileSize) bad(`central directory (${cdOffset}+${cdSize}) beyond the end of the file (${fileSize})`);
    const cd = await readExactly(fh, cdOffset, cdSize, file);
    const cv = view(cd);
    const entries = new Map<string, ZipEntry>();
    const names = new TextDecoder("utf-8", { fatal: false });
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cdSize || cv.getUint32(p, true) !== CDIR_SIG) bad(`central directory entry ${i} is truncated or has no signature`);
      const flags = cv.getUint16(p + 8, true);
      const method = cv.getUint16(p + 10, true);
      const crc = cv.getUint32(p + 16, true);
      let compressedSize = cv.getUint32(p + 20, true);
      let size = cv.getUint32(p + 24, true);
      const nameLen = cv.getUint16(p + 28, true);
      const extraLen = cv.getUint16(p + 30, true);
      const commentLen = cv.getUint16(p + 32, true);
      let localOffset = cv.getUint32(p + 42, true);
      const end = p + 46 + nameLen + extraLen + commentLen;
      if (end > cdSize) bad(`central directory entry ${i} runs past the directory`);
      const name = names.decode(cd.subarray(p + 46, p + 46 + nameLen));
      // zip64 extra field: the 0xffffffff fields, in order, are replaced by 8-byte values.
      let e = p + 46 + nameLen;
      const extraEnd = e + extraLen;
      while (e + 4 <= extraEnd) {
        const id = cv.getUint16(e, true);
        const len = cv.getUint16(e + 2, true);
        if (e + 4 + len > extraEnd) bad(`entry '${name}': extra field runs past its header`);
        if (id === 0x0001) {
          let q = e + 4;
          const next = (what: string): number => {
            if (q + 8 > e + 4 + len) bad(`entry '${name}': zip64 extra field too short for ${what}`);
            const v = safe(cv.getBigUint64(q, true), what, bad);
            q += 8;
            return v;
          };
          if (size === 0xffffffff) size = next("size");
          if (compressedSize === 0xffffffff) compressedSize = next("compressed size");
          if (localOffset === 0xffffffff) localOffset = next("local header offset");
        }
        e += 4 + len;
      }
      if (flags & 0x1) bad(`entry '${name}' is encrypted`);
      if (method !== 0 && method !== 8) bad(`entry '${name}' uses compression method ${method} (only stored and deflated are read)`);
      if (method === 0 && compressedSize !== size) bad(`stored entry '${name}' has compressed size ${compressedSize} != size ${size}`);
      if (localOffset + 30 + compressedSize > cdOffset) bad(`entry '${name}' (offset ${localOffset}, ${compressedSize} bytes) overlaps the central directory`);
      if (entries.has(name)) bad(`entry '${name}' appears twice`);
      budget.charge(128 + 2 * nameLen, "a zip directory entry");
      entries.set(name, { name, method, compressedSize, size, crc, localOffset });
      p = end;
    }
    return new ZipArchive(file, fh, entries, fileSize, budget);
  }

  /** Where an entry's data starts (after its local header), checked against the file. */
  async dataOffset(entry: ZipEntry): Promise<number> {
    const h = view(await readExactly(this.fh, entry.localOffset, 30, this.file));
    if (h.getUint32(0, true) !== LOCAL_SIG) throw new FormatError(this.file, `bad zip archive: entry '${entry.name}' has no local header at ${entry.localOffset}`);
    const start = entry.localOffset + 30 + h.getUint16(26, true) + h.getUint16(28, true);
    if (start + entry.compressedSize > this.fileSize) {
      throw new FormatError(this.file, `bad zip archive: entry '${entry.name}' data (${start}+${entry.compressedSize}) runs past the end of the file`);
    }
    return start;
  }

  /** The entry's bytes, in a fresh 8-byte-aligned buffer. `maxSize` bounds what a hostile header can make us allocate. */
  async read(entry: ZipEntry, maxSize = Number.MAX_SAFE_INTEGER): Promise<Uint8Array> {
    if (entry.size > maxSize) throw new FormatError(this.file, `zip entry '${entry.name}' is ${entry.size} bytes, more than the ${maxSize} allowed`);
    // Inflating needs the output and an aligned copy of it; a stored entry only its bytes.
    this.budget.charge(entry.method === 0 ? entry.size : entry.compressedSize + 2 * entry.size, `zip entry '${entry.name}' (${entry.size} bytes)`);
    const start = await this.dataOffset(entry);
    const raw = await readExactly(this.fh, start, entry.compressedSize, this.file);
    if (entry.method === 0) return raw;
    let out: Buffer;
    try {
      out = inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) });
    } catch (err) {
      throw new FormatError(this.file, `zip entry '${entry.name}' does not inflate: ${(err as Error).message}`);
    }
    if (out.byteLength !== entry.size) throw new FormatError(this.file, `zip entry '${entry.name}' inflates to ${out.byteLength} bytes, expected ${entry.size}`);
    if (crc32(out) >>> 0 !== entry.crc) throw new FormatError(this.file, `zip entry '${entry.name}' fails its CRC check`);
    const aligned = new Uint8Array(new ArrayBuffer(out.byteLength));
    aligned.set(out);
    return aligned;
  }
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function safe(v: bigint, what: string, bad: (m: string) => never): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) bad(`${what} ${v} is too large`);
  return Number(v);
}
