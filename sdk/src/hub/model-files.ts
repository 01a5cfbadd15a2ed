/**
 * Which files of a model repository make a loadable model folder: what transformers reads (configs, tokenizer
 * files, weights) and no more — repositories also carry ONNX, TF, Flax, GGUF and other copies of the weights.
 * safetensors weights are preferred; PyTorch `.bin` weights are taken only when a repo has no safetensors.
 */
export interface RepoFile {
  readonly path: string;
  readonly size: number;
}

const SMALL_FILES = /^(?:.+\.json|merges\.txt|vocab\.txt|.+\.model|.+\.tiktoken|.+\.jinja)$/;

export function selectModelFiles(files: readonly RepoFile[]): RepoFile[] {
  const top = files.filter((f) => !f.path.includes("/"));
  const safetensors = top.filter((f) => f.path.endsWith(".safetensors"));
  const weights = safetensors.length ? safetensors : top.filter((f) => /^pytorch_model.*\.bin$/.test(f.path));
  // Without safetensors weights, a safetensors index would name files that are not there.
  const small = top.filter((f) => SMALL_FILES.test(f.path) && (safetensors.length > 0 || f.path !== "model.safetensors.index.json"));
  return [...small, ...weights];
}
