export type { Engine, EngineModels, EngineRequest, EngineStats } from "./engine.js";
export { LocalEngine, type LocalEngineOptions } from "./local-engine.js";
export { AdapterRegistry, type AdapterRegistryOptions } from "./adapter-registry.js";
