import { LoraportError } from "../errors.js";

/**
 * A tokenizer cannot do what was asked: no chat template, a template that fails or raises, bad ids.
 * (Unreadable files are `FormatError`, absent ones `FileMissingError`.) Codes: `E_NO_CHAT_TEMPLATE`,
 * `E_CHAT_TEMPLATE`, `E_TOKENIZER`.
 */
export class TokenizerError extends LoraportError {
  constructor(message: string, options?: ErrorOptions & { code?: string }) {
    super(options?.code ?? "E_TOKENIZER", message, options);
  }
}
