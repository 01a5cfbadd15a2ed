/** Which weights format a file is, from its first bytes (never from its name). */
import { stat } from "node:fs/promises";
import { FileMissingError } from "../errors.js";
import { openFileForReading } from "./safetensors/reader.js";

export type WeightsFormat = "safetensors" | "torch" | "torch-legacy" | "unknown";

/** Legacy (pre-1.6) torch.save files start with a pickled magic number: PROTO 2, LONG1 10 bytes 0x1950a86a20f9469cfc6c. */
const LEGACY_MAGIC = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

export async function detectFormat(path: string): Promise<WeightsFormat> {
  const st = await stat(path).catch(() => undefined);
  if (!st) throw new FileMissingError(path);
  if (st.isDirectory()) return "safetensors"; // a model folder: model.safetensors or a sharded index
  const fh = await openFileForReading(path);
  try {
    const head = Buffer.alloc(16);
    const { bytesRead } = await fh.read(head, 0, 16, 0);
    if (bytesRead >= 4 && head.readUInt32LE(0) === 0x04034b50) return "torch";
    if (bytesRead >= 2 && head[0] === 0x80 && head[1]! <= 5) return LEGACY_MAGIC.every((b, i) => head[i] === b) || head[1] === 2 ? "torch-legacy" : "unknown";
    if (bytesRead >= 9 && head[8] === 0x7b /* { */ && head.readBigUInt64LE(0) <= BigInt(st.size - 8)) return "safetensors";
    return "unknown";
  } finally {
    await fh.close();
  }
}
