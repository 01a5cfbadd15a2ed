export { TextModel, type Prompt, type TextGenerateOptions } from "./text-model.js";
export { GenerationStream } from "./generation-stream.js";
export { generateBatch, leftPad, padId } from "./generate.js";
export { Sequence, checkGeneration, type CheckedOptions, type PieceDecoder, type PieceDecoderFactory } from "./sequence.js";
export type { FinishReason, GenerateOptions, GenerationDelta, GenerationResult, GenerationTimings } from "./generate-options.js";
export { GenerationOptionError, parseStop, validateSamplingOptions, type ParsedStop, type SamplingOptions, type StopOption } from "./sampling-options.js";
export { Sampler, processLogits } from "./sampler.js";
export { StopMatcher, type StopReason, type StopStep } from "./stop.js";
