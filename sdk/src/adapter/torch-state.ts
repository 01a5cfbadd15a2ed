/**
 * The one place the adapter code reads torch pickles (`adapter_model.bin`, loralib checkpoints), through the
 * formats layer's safe torch reader (no pickle executes code).
 */
import { FormatError } from "../errors.js";
import type { Tensor } from "../tensor/index.js";

/** A torch checkpoint's tensors by key (wrappers such as `model_state_dict` are left to the caller). */
export async function loadTorchStateDict(path: string): Promise<Map<string, Tensor>> {
  throw new FormatError(path, "reading torch pickles needs the torch reader (sdk/src/formats/torch), not available in this build");
}
