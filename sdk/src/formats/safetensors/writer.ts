/**
 * safetensors writer, byte-identical to Python `safetensors.torch.save_file`: compact JSON header with
 * `__metadata__` first, tensors ordered by dtype rank descending then name bytewise, header padded with
 * spaces to a multiple of 8. Tensor data is streamed tensor by tensor into a temp file that is renamed
 * into place (atomic).
 */
import { FormatError } from "../../errors.js";
import { arrayTypeOf, isDType, itemsize, type DType } from "../../tensor/dtype.js";
import type { Tensor } from "../../tensor/tensor.js";
import { bytesOf, numel } from "../../tensor/tensor-impl.js";
import { writeAll, writeFileAtomic } from "../atomic-file.js";

/** The safetensors library's Dtype enum order; save_file sorts by it, descending (measured with safetensors 0.8.0). */
const DTYPE_RANK: Readonly<Record<DType, number>> = {
  BOOL: 0, U8: 1, I8: 2, F8_E5M2: 3, F8_E4M3: 4, I16: 5, U16: 6, F16: 7, BF16: 8,
  I32: 9, U32: 10, F32: 11, F64: 12, I64: 13, U64: 14,
};

const utf8 = new TextEncoder();
const STAGING_BYTES = 4 << 20;

/** Bytewise (UTF-8) comparison, as Rust orders `String`s. */
function compareUtf8(a: string, b: string): number {
  if (a === b) return 0;
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/** The header bytes (JSON + space padding) and the tensors in file order. */
export function buildHeader(
  path: string,
  tensors: Map<string, Tensor> | Iterable<[string, Tensor]>,
  metadata?: Record<string, string>,
): { header: Uint8Array; ordered: Array<[string, Tensor]> } {
  const list: Array<[string, Tensor]> = [];
  const seen = new Set<string>();
  for (const [name, t] of tensors) {
    if (typeof name !== "string") throw new FormatError(path, `tensor name ${String(name)} is not a string`);
    if (name === "__metadata__") throw new FormatError(path, "a tensor cannot be named '__metadata__'");
    if (seen.has(name)) throw new FormatError(path, `tensor '${name}' given twice`);
    seen.add(name);
    checkTensor(path, name, t);
    list.push([name, t]);
  }
  list.sort(([an, at], [bn, bt]) => DTYPE_RANK[bt.dtype] - DTYPE_RANK[at.dtype] || compareUtf8(an, bn));

  const parts: string[] = [];
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") throw new FormatError(path, `metadata value for '${k}' is not a string`);
    }
    parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  }
  let offset = 0;
  for (const [name, t] of list) {
    const end = offset + t.data.byteLength;
    parts.push(`${JSON.stringify(name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  const json = utf8.encode(`{${parts.join(",")}}`);
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20, 8 + json.byteLength);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(json, 8);
  return { header, ordered: list };
}

function checkTensor(path: string, name: string, t: Tensor): void {
  if (!isDType(t.dtype)) throw new FormatError(path, `tensor '${name}': unknown dtype ${String(t.dtype)}`);
  const Ctor = arrayTypeOf(t.dtype);
  if (!(t.data instanceof Ctor)) throw new FormatError(path, `tensor '${name}': ${t.dtype} data must be a ${Ctor.name}`);
  const n = numel(t.shape);
  if (t.data.byteLength !== n * itemsize(t.dtype)) {
    throw new FormatError(path, `tensor '${name}': ${t.dtype} [${t.shape.join(", ")}] needs ${n * itemsize(t.dtype)} bytes, data has ${t.data.byteLength}`);
  }
}

/** Write tensors (and optional string metadata) as a safetensors file, atomically. */
export async function writeSafetensors(
  path: string,
  tensors: Map<string, Tensor> | Iterable<[string, Tensor]>,
  metadata?: Record<string, string>,
): Promise<void> {
  const { header, ordered } = buildHeader(path, tensors, metadata);
  await writeFileAtomic(path, async (fh) => {
    // Small tensors (adapters have hundreds) are gathered into one staging buffer so that each costs a copy,
    // not a write call; large ones are written straight from their own memory.
    const staging = new Uint8Array(STAGING_BYTES);
    let staged = 0;
    let pos = 0;
    const flush = async () => {
      pos = await writeAll(fh, staging.subarray(0, staged), pos);
      staged = 0;
    };
    for (const bytes of [header, ...ordered.map(([, t]) => bytesOf(t))]) {
      if (bytes.byteLength > STAGING_BYTES / 4) {
        await flush();
        pos = await writeAll(fh, bytes, pos);
        continue;
      }
      if (staged + bytes.byteLength > STAGING_BYTES) await flush();
      staging.set(bytes, staged);
      staged += bytes.byteLength;
    }
    await flush();
  });
}
