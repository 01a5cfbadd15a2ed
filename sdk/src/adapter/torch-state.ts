/**
 * The one place the adapter code reads torch pickles (`adapter_model.bin`, loralib checkpoints), through the
 * formats layer's allowlisted torch reader (no pickle executes code).
 */
import { readTorchCheckpoint } from "../formats/torch/index.js";
import type { Tensor } from "../tensor/index.js";

/** A torch checkpoint's tensors by flattened key (`model_state_dict` / `state_dict` wrappers unwrapped). */
export async function loadTorchStateDict(path: string): Promise<Map<string, Tensor>> {
  return (await readTorchCheckpoint(path)).tensors;
}
