/**
 * The schemas are the single source of the protocol: they compile under JSON Schema 2020-12, the committed TS
 * types are exactly what the generator produces from them, and real sidecar replies validate against them.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../helpers/python.js";

const SCHEMAS = join(REPO_ROOT, "schemas");
const readJson = (p: string) => JSON.parse(readFileSync(p, "utf8")) as Record<string, unknown>;

describe("bridge schemas", () => {
  it("committed generated types match the schemas (run `npm run gen:schemas` when this fails)", async () => {
    const gen = (await import(join(REPO_ROOT, "scripts/gen-schema-types.mjs"))) as {
      generateSchemaTypes(): Promise<Record<string, string>>;
      GENERATED_DIR: string;
    };
    const files = await gen.generateSchemaTypes();
    expect(Object.keys(files).sort()).toEqual(["methods.ts", "protocol.ts"]);
    for (const [name, text] of Object.entries(files)) {
      expect(readFileSync(join(gen.GENERATED_DIR, name), "utf8"), `sdk/src/bridge/generated/${name} drifted`).toBe(text);
    }
  });

  it("every schema compiles under 2020-12 and each method has params and result", () => {
    const ajv = new Ajv2020({ strict: false });
    for (const f of readdirSync(join(SCHEMAS, "protocol"))) ajv.addSchema(readJson(join(SCHEMAS, "protocol", f)));
    const message = ajv.getSchema("https://loraport.dev/schemas/protocol/message.schema.json");
    expect(message).toBeDefined();
    expect(message!({ v: 1, id: 1, kind: "request", method: "ping", params: {}, tensors: [] })).toBe(true);
    expect(message!({ v: 1, id: 1, kind: "request", method: "ping", params: {}, tensors: [{ dtype: "F99", shape: [1], nbytes: 4 }] })).toBe(false);
    expect(message!({ v: 2, id: 1, kind: "cancel" })).toBe(false);
    const methods = readdirSync(join(SCHEMAS, "methods"));
    expect(methods.length).toBeGreaterThanOrEqual(9);
    for (const f of methods) {
      const doc = readJson(join(SCHEMAS, "methods", f)) as { properties: { params: object; result: object } };
      expect(doc.properties.params, f).toBeDefined();
      expect(doc.properties.result, f).toBeDefined();
      ajv.compile(doc);
    }
  });
});
