export { startServer, DEFAULT_MAX_BODY_BYTES, type RunningServer, type ServerOptions } from "./server.js";
export { HttpError } from "./errors.js";
export type * from "./openai-types.js";
