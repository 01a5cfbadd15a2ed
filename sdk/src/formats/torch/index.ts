/** torch.save checkpoints: safe (allowlisted) reading of the zip format. */
export { readTorchCheckpoint, flattenStateDict, LEGACY_TORCH_ADVICE, type TorchCheckpoint, type TensorView } from "./checkpoint.js";
export { TORCH_WEIGHTS_ONLY_GLOBALS } from "./allowlist.js";
