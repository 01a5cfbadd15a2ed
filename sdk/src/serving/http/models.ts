/**
 * The model routes, with vLLM's names, bodies and answers: `GET /v1/models` (the base, then every adapter with
 * `parent` = the base), `POST /v1/load_lora_adapter` `{"lora_name", "lora_path", "load_inplace"?}` and
 * `POST /v1/unload_lora_adapter` `{"lora_name"}`, each answering 200 with a one-line text on success.
 */
import type { ServerResponse } from "node:http";
import { FileMissingError } from "../../errors.js";
import type { Engine } from "../engine.js";
import type { JsonObject } from "./body.js";
import { badRequest, HttpError, notFound, toHttpError } from "./errors.js";
import type { ModelCard, ModelList } from "./openai-types.js";

export function listModels(engine: Engine, created: number, maxModelLen: number | null, roots: ReadonlyMap<string, string>): ModelList {
  const { base, adapters } = engine.models();
  const card = (id: string, parent: string | null): ModelCard => ({
    id, object: "model", created, owned_by: "loraport", root: roots.get(id) ?? id, parent, max_model_len: parent === null ? maxModelLen : null, permission: [],
  });
  return { object: "list", data: [card(base, null), ...adapters.map((a) => card(a, base))] };
}

function sendText(res: ServerResponse, text: string): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(200, { "content-type": "text/plain; charset=utf-8", "content-length": String(Buffer.byteLength(text)) });
  res.end(text);
}

function nameField(body: JsonObject, field: string, message: string): string {
  const v = body[field];
  if (typeof v !== "string" || v === "") throw new HttpError(400, "InvalidUserInput", message, field);
  return v;
}

export async function loadAdapter(engine: Engine, body: JsonObject, res: ServerResponse, roots: Map<string, string>): Promise<void> {
  const both = "Both 'lora_name' and 'lora_path' must be provided.";
  const name = nameField(body, "lora_name", both);
  const path = nameField(body, "lora_path", both);
  const inplace = body["load_inplace"];
  if (inplace !== undefined && inplace !== null && typeof inplace !== "boolean") throw badRequest("load_inplace: expected true or false", "load_inplace");
  const { base, adapters } = engine.models();
  if (name === base) throw new HttpError(400, "InvalidUserInput", `The lora adapter '${name}' has the base model's name; choose another.`, "lora_name");
  if (adapters.includes(name) && inplace !== true) {
    throw new HttpError(400, "InvalidUserInput", `The lora adapter '${name}' has already been loaded. If you want to load the adapter in place, set 'load_inplace' to True.`, "lora_name");
  }
  try {
    await engine.loadAdapter(name, path);
  } catch (err) {
    if (err instanceof FileMissingError) throw notFound(err.message, "lora_path");
    throw toHttpError(err);
  }
  roots.set(name, path);
  sendText(res, `Success: LoRA adapter '${name}' added successfully.`);
}

export async function unloadAdapter(engine: Engine, body: JsonObject, res: ServerResponse, roots: Map<string, string>): Promise<void> {
  const name = nameField(body, "lora_name", "'lora_name' needs to be provided to unload a LoRA adapter.");
  if (!engine.models().adapters.includes(name)) throw notFound(`The lora adapter '${name}' cannot be found.`, "lora_name");
  try {
    await engine.unloadAdapter(name);
  } catch (err) {
    throw toHttpError(err);
  }
  roots.delete(name);
  sendText(res, `Success: LoRA adapter '${name}' removed successfully.`);
}
