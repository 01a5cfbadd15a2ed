/**
 * The second half of the causal zoo through the ONNX exporter (the first is in zoo-export.test.ts; two files so
 * vitest's two workers export side by side): both export modes run in onnxruntime-node with PyTorch + PEFT's logits
 * (adapter on, and no adapter = the base's), and greedy KV-cache generation gives PEFT generate's tokens.
 */
import { afterAll, beforeAll, describe, it } from "vitest";
import { tempDir } from "../helpers/python.js";
import { limit } from "../helpers/timeouts.js";
import { checkExported, makeZoo, type Made } from "./zoo-export-cases.js";

const EXPORTED = ["opt", "bloom", "falcon", "gptj", "olmo2", "starcoder2"] as const;

describe("model zoo through the ONNX exporter, second half", () => {
  const tmp = tempDir("loraport-zoo-export-2-");
  let made: Record<string, Made> = {};
  beforeAll(() => {
    made = makeZoo(tmp.dir, [], EXPORTED, { timeoutMs: 300_000 });
  }, limit(330_000));
  afterAll(() => tmp.cleanup());

  it.each(EXPORTED)("%s: adapter-inputs and merged exports run in onnxruntime-node with PEFT's logits (and the base's without an adapter); greedy generation gives PEFT's tokens", async (arch) => {
    await checkExported(arch, made[arch]!, tmp.dir);
  }, limit(120_000));
});
