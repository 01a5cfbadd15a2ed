/**
 * An exported causal LM that generates text: the ONNX Runtime model (`LoraModel`, KV cache in its worker), the
 * tokenizer copied into the export, and adapters registered by name and chosen per request.
 *
 *   await using model = await TextModel.load("onnx/");
 *   await model.registerAdapter("support", adapter);
 *   for await (const d of model.generate("Hello", { adapter: "support", maxNewTokens: 32 })) process.stdout.write(d.text);
 */
import { join } from "node:path";
import { FileMissingError, RuntimeError } from "../errors.js";
import { resolveModelPath } from "../hub/resolve-model.js";
import type { AdapterSource } from "../runtime/adapter-feeds.js";
import { LoraModel, type LoraModelOptions } from "../runtime/lora-model.js";
import { loadTokenizer, type ChatMessage, type ChatTemplateOptions, type Tokenizer } from "../tokenizer/index.js";
import { generateBatch, type PieceDecoderFactory } from "./generate.js";
import type { GenerateOptions, GenerationResult } from "./generate-options.js";
import { GenerationStream } from "./generation-stream.js";
import { GenerationOptionError } from "./sampling-options.js";

/** Text (tokenized with the export's tokenizer), token ids, or chat messages (rendered with its chat template). */
export type Prompt = string | readonly number[] | readonly ChatMessage[];

export interface TextGenerateOptions extends GenerateOptions {
  /** Chat prompts: options of the chat template (`addGenerationPrompt` defaults to true here). */
  readonly chat?: ChatTemplateOptions;
}

export class TextModel {
  /** The ONNX Runtime model underneath (forward passes, `prefill`/`decode`). */
  readonly lora: LoraModel;
  /** The export's tokenizer; null when its base folder had none (then prompts are token ids). */
  readonly tokenizer: Tokenizer | null;

  private constructor(lora: LoraModel, tokenizer: Tokenizer | null) {
    this.lora = lora;
    this.tokenizer = tokenizer;
  }

  /** Load an export of a causal LM (`loraport export`, with its KV cache) and its tokenizer. */
  static async load(dir: string, options: LoraModelOptions = {}): Promise<TextModel> {
    dir = await resolveModelPath(dir, { onProgress: options.onProgress });
    const lora = await LoraModel.load(dir, options);
    try {
      const gen = lora.manifest.generation;
      if (!gen) {
        throw new RuntimeError(
          lora.manifest.task === "causal-lm"
            ? `${dir}: this export has no KV cache (exported with --no-kv-cache, or by an earlier loraport); re-export it with 'loraport export' to generate`
            : `${dir}: a ${lora.manifest.task} model does not generate text (only causal LMs do)`,
        );
      }
      const tokenizer = gen.tokenizer ? await loadTokenizer(join(dir, gen.tokenizer)) : null;
      return new TextModel(lora, tokenizer);
    } catch (err) {
      await lora.close();
      throw err;
    }
  }

  get dir(): string {
    return this.lora.dir;
  }

  get adapters(): string[] {
    return this.lora.adapters;
  }

  registerAdapter(name: string, adapter: AdapterSource): Promise<void> {
    return this.lora.registerAdapter(name, adapter);
  }

  unregisterAdapter(name: string): Promise<void> {
    return this.lora.unregisterAdapter(name);
  }

  /** Token ids of a prompt: ids as given; text encoded as transformers' `tokenizer(text)`; chats through the template. */
  async encodePrompt(prompt: Prompt, chat: ChatTemplateOptions = {}, field = "prompt"): Promise<number[]> {
    if (typeof prompt === "string") return (await this.#requireTokenizer(field)).encode(prompt);
    if (!Array.isArray(prompt)) throw new GenerationOptionError(field, `expected a string, an array of token ids or an array of chat messages, got ${typeof prompt}`);
    if (prompt.every((x) => typeof x === "number")) return [...(prompt as readonly number[])];
    if (prompt.every((x) => typeof x === "object" && x !== null && typeof (x as ChatMessage).role === "string")) {
      const tok = await this.#requireTokenizer(field);
      return tok.encodeChat(prompt as readonly ChatMessage[], { addGenerationPrompt: true, ...chat });
    }
    throw new GenerationOptionError(field, "expected a string, an array of token ids (numbers) or an array of chat messages ({role, content})");
  }

  /** Generate from one prompt: iterate the stream for deltas, `await stream.result` for the whole result. */
  generate(prompt: Prompt, options: TextGenerateOptions = {}): GenerationStream<GenerationResult> {
    return new GenerationStream(async (emit) => {
      const ids = await this.encodePrompt(prompt, options.chat);
      const [result] = await generateBatch(this.lora, [ids], options, emit, this.pieceDecoders());
      return result!;
    });
  }

  /** Generate from several prompts of any lengths in one batch (one adapter); deltas carry each prompt's `index`. */
  generateBatch(prompts: readonly Prompt[], options: TextGenerateOptions = {}): GenerationStream<GenerationResult[]> {
    return new GenerationStream(async (emit) => {
      if (!Array.isArray(prompts)) throw new GenerationOptionError("prompts", "expected an array of prompts");
      const ids = await Promise.all(prompts.map((p, i) => this.encodePrompt(p, options.chat, `prompts[${i}]`)));
      return generateBatch(this.lora, ids, options, emit, this.pieceDecoders());
    });
  }

  /** Fresh streaming text decoders, one per sequence (special tokens left out); undefined without a tokenizer. */
  pieceDecoders(): PieceDecoderFactory | undefined {
    const tok = this.tokenizer;
    if (!tok) return undefined;
    return () => {
      const d = tok.streamDecoder({ skipSpecialTokens: true });
      return { push: (id) => d.push(id), flush: () => d.flush() };
    };
  }

  async #requireTokenizer(field: string): Promise<Tokenizer> {
    if (this.tokenizer) return this.tokenizer;
    const where = join(this.dir, "tokenizer", "tokenizer.json");
    throw new FileMissingError(where, `${field}: text and chat prompts need a tokenizer, and ${this.dir} has none (${where} missing: its base folder had no tokenizer.json); give token ids instead`);
  }

  async close(): Promise<void> {
    await this.lora.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
