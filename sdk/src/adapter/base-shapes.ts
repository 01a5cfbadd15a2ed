/**
 * The weight shapes of a base model's modules, read from its safetensors header(s) only: what a loralib checkpoint
 * does not store (which modules are convolutions, their kernels and groups) when converting it.
 */
import { openSafetensorsModel } from "../formats/safetensors/index.js";

/**
 * A lookup from module path to the shape of its weight: `<module>.weight`, loralib's own `<module>.conv.weight`,
 * or either with leading path components dropped (checkpoints and bases differ in prefixes).
 */
export async function readBaseWeightShapes(basePath: string): Promise<(module: string) => readonly number[] | undefined> {
  const src = await openSafetensorsModel(basePath);
  const shapes = new Map<string, readonly number[]>();
  try {
    for (const name of src.names) shapes.set(name, src.entry(name)!.shape);
  } finally {
    await src.close();
  }
  return (module: string) => {
    const parts = module.split(".");
    for (let i = 0; i < parts.length; i++) {
      const m = parts.slice(i).join(".");
      const hit = shapes.get(`${m}.weight`) ?? shapes.get(`${m}.conv.weight`);
      if (hit) return hit;
    }
    return undefined;
  };
}
