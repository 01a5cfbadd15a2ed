/**
 * Reading GGUF files: the header first (read in growing chunks until it parses, so a big base model's
 * tensor data is never read to list it), then tensors on request. Only plain types (F32, F16, BF16, F64,
 * integers) become loraport Tensors; block-quantized types are listed but refused as numbers.
 */
import { open, stat } from "node:fs/promises";
import { FileMissingError, FormatError } from "../../errors.js";
import type { Tensor } from "../../tensor/tensor.js";
import { arrayTypeOf } from "../../tensor/dtype.js";
import { readExactly } from "../atomic-file.js";
import { NeedMoreBytes } from "./cursor.js";
import { parseGgufHeader, type GgufHeader, type GgufTensorInfo } from "./header.js";

const FIRST_READ = 1 << 20;

/** Read and validate a GGUF file's header (metadata and tensor infos). */
export async function openGguf(path: string): Promise<GgufHeader> {
  let size: number;
  try {
    const s = await stat(path);
    if (!s.isFile()) throw new FormatError(path, "not a file");
    size = s.size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new FileMissingError(path);
    throw err;
  }
  const fh = await open(path, "r");
  try {
    let want = Math.min(size, FIRST_READ);
    for (;;) {
      const bytes = await readExactly(fh, 0, want, path);
      try {
        return parseGgufHeader(path, bytes, size);
      } catch (err) {
        if (!(err instanceof NeedMoreBytes)) throw err;
        want = Math.min(size, Math.max(err.atLeast, want * 2));
      }
    }
  } finally {
    await fh.close();
  }
}

/** One tensor's data as a loraport Tensor (row-major shape, the dtype it is stored in). */
export async function readGgufTensor(header: GgufHeader, info: GgufTensorInfo): Promise<Tensor> {
  const dtype = info.typeInfo.dtype;
  if (dtype === undefined) {
    throw new FormatError(header.file, `tensor '${info.name}' is ${info.typeInfo.name} (block-quantized): loraport reads only F32, F16, BF16, F64 and integer tensors`);
  }
  const fh = await open(header.file, "r");
  try {
    const bytes = await readExactly(fh, info.byteOffset, info.byteLength, header.file);
    const Ctor = arrayTypeOf(dtype);
    const data = new Ctor(bytes.buffer, bytes.byteOffset, info.byteLength / info.typeInfo.typeSize);
    return { dtype, shape: [...info.shape], data } as Tensor;
  } finally {
    await fh.close();
  }
}

/** The header and every tensor (for adapters and other small files). */
export async function readGguf(path: string): Promise<{ header: GgufHeader; tensors: Map<string, Tensor> }> {
  const header = await openGguf(path);
  const tensors = new Map<string, Tensor>();
  for (const info of header.tensors) tensors.set(info.name, await readGgufTensor(header, info));
  return { header, tensors };
}
