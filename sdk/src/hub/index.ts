/** Models by name: Hugging Face Hub ids resolved from the local cache, downloaded into it when possible. */
export { resolveModelPath, type ResolveModelOptions } from "./resolve-model.js";
export { parseHubId, formatHubId, type HubId } from "./hub-id.js";
export { hubCacheDir } from "./cache-dir.js";
