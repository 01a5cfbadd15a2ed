/**
 * Which weights format a file is, from its first bytes (never from its name). The safetensors test is the one
 * the readers apply (header.ts): a length prefix that fits the file, then JSON whitespace, then `{` — so a file
 * is called safetensors here exactly when Python's safetensors would start parsing its header. It is tried
 * first: a valid length prefix can begin with the bytes a pickle begins with (a 384-byte header starts 0x80 0x01).
 */
import { stat } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { FileMissingError } from "../errors.js";
import { isJsonSpace } from "./safetensors/header.js";
import { openFileForReading } from "./safetensors/reader.js";

export type WeightsFormat = "safetensors" | "torch" | "torch-legacy" | "unknown";

/** Legacy (pre-1.6) torch.save files start with a pickled magic number: PROTO 2, LONG1 10 bytes 0x1950a86a20f9469cfc6c. */
const LEGACY_MAGIC = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/** Header bytes are searched for their first non-space byte this many at a time. */
const SCAN_CHUNK = 64 * 1024;

export async function detectFormat(path: string): Promise<WeightsFormat> {
  const st = await stat(path).catch(() => undefined);
  if (!st) throw new FileMissingError(path);
  if (st.isDirectory()) return "safetensors"; // a model folder: model.safetensors or a sharded index
  const fh = await openFileForReading(path);
  try {
    const head = Buffer.alloc(16);
    const { bytesRead } = await fh.read(head, 0, 16, 0);
    if (bytesRead >= 8 && (await startsLikeSafetensors(fh, head, st.size))) return "safetensors";
    if (bytesRead >= 4 && head.readUInt32LE(0) === 0x04034b50) return "torch";
    if (bytesRead >= 2 && head[0] === 0x80 && head[1]! <= 5) return LEGACY_MAGIC.every((b, i) => head[i] === b) || head[1] === 2 ? "torch-legacy" : "unknown";
    return "unknown";
  } finally {
    await fh.close();
  }
}

/** The length prefix fits the file and the header's first non-whitespace byte is `{`. */
async function startsLikeSafetensors(fh: FileHandle, head: Buffer, size: number): Promise<boolean> {
  const n = head.readBigUInt64LE(0);
  if (n < 2n || n > BigInt(size - 8)) return false;
  const end = 8 + Number(n);
  const chunk = Buffer.alloc(Math.min(SCAN_CHUNK, end - 8));
  for (let pos = 8; pos < end; ) {
    const { bytesRead } = await fh.read(chunk, 0, Math.min(chunk.length, end - pos), pos);
    if (bytesRead === 0) return false;
    for (let i = 0; i < bytesRead; i++) {
      if (!isJsonSpace(chunk[i]!)) return chunk[i] === 0x7b;
    }
    pos += bytesRead;
  }
  return false;
}
