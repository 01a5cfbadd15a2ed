/**
 * Reading a request's JSON body with a size limit: a declared `content-length` over the limit is refused before any
 * byte is read, a body that grows past it is refused as soon as it does (413); bad JSON or a body that is not an
 * object is a 400.
 */
import type { IncomingMessage } from "node:http";
import { badRequest, HttpError } from "./errors.js";

export type JsonObject = Record<string, unknown>;

export function tooLarge(limit: number): HttpError {
  return new HttpError(413, "RequestTooLargeError", `request body over the server's limit of ${limit} bytes`);
}

/** The body as a JSON object. Throws `HttpError` (400, 413). */
export async function readJsonObject(req: IncomingMessage, limit: number): Promise<JsonObject> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge(limit);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") throw badRequest("expected a JSON object as the request body, got an empty body");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw badRequest(`the request body is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw badRequest(`expected a JSON object as the request body, got ${Array.isArray(value) ? "an array" : value === null ? "null" : typeof value}`);
  }
  return value as JsonObject;
}
