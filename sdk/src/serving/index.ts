export type { Engine, EngineModels, EngineRequest, EngineStats } from "./engine.js";
export { LocalEngine, type LocalEngineOptions } from "./local-engine.js";
export { AdapterRegistry, type AdapterRegistryOptions } from "./adapter-registry.js";
export { VllmEngine, type VllmConnectOptions } from "./vllm/vllm-engine.js";
export type { VllmLaunchOptions } from "./vllm/vllm-process.js";
export { startServer, DEFAULT_MAX_BODY_BYTES, HttpError, type RunningServer, type ServerOptions } from "./http/index.js";
