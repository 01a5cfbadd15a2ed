/**
 * The order test files start in: longest first, so the two workers finish together instead of one running a long
 * file alone at the end. A clean clone has no vitest cache of durations (vitest would then start the largest files
 * by bytes, unrelated to time: the demo and the conformance suite came last), so the heavy files' seconds are
 * listed here, as vitest recorded each file's last run on the shared 2-core machine (loaded by other work;
 * 1 Dec 2026); only their order matters. A file not listed uses vitest's cached duration when there is one, else UNKNOWN_S: new files run
 * among the middle ones, never last. Files under 10 s are not listed (they fill in at the end).
 */
import { relative } from "node:path";
import { BaseSequencer, type TestSpecification } from "vitest/node";

const MEASURED_S: Record<string, number> = {
  "sdk/test/cli/demo.test.ts": 555,
  "sdk/test/zoo/zoo-merge.test.ts": 40,
  "sdk/test/zoo/": 300, // the rest of the model-zoo matrix, its exports (a prefix: every file under it)
  "sdk/test/runtime/lora-model.test.ts": 243,
  "sdk/test/formats/hostile.test.ts": 184,
  "conformance/conformance.test.ts": 171,
  "sdk/test/bridge/lifecycle.test.ts": 154,
  "sdk/test/cli/progress.test.ts": 151,
  "sdk/test/serving/http.test.ts": 128,
  "sdk/test/adapter/convert-reference.test.ts": 112,
  "sdk/test/runtime/onnx-adapter.test.ts": 110,
  "sdk/test/generation/generate-parity.test.ts": 104,
  "sdk/test/conformance/verify.test.ts": 102,
  "sdk/test/generation/cli.test.ts": 101,
  "sdk/test/adapter/merge-model-folder.test.ts": 92,
  "sdk/test/training/trainer.test.ts": 91,
  "sdk/test/formats/fuzz.test.ts": 87,
  "sdk/test/gguf/llama-cpp.test.ts": 86,
  "sdk/test/adapter/merge-model.test.ts": 83,
  "sdk/test/adapter/combine-methods.test.ts": 76,
  "sdk/test/training/export-errors.test.ts": 67,
  "sdk/test/adapter/math-reference.test.ts": 59,
  "sdk/test/serving/vllm.test.ts": 58,
  "sdk/test/adapter/config.test.ts": 46,
  "sdk/test/formats/torch.test.ts": 42,
  "sdk/test/runtime/cli.test.ts": 39,
  "sdk/test/bridge/shared-memory.test.ts": 38,
  "sdk/test/bridge/arguments.test.ts": 38,
  "sdk/test/generation/mixed-batch.test.ts": 36,
  "sdk/test/adapter/embedding-saved-layers.test.ts": 33,
  "sdk/test/training/torch-engine.test.ts": 33,
  "sdk/test/hub/resolve-model.test.ts": 31,
  "sdk/test/serving/scheduler.test.ts": 30,
  "sdk/test/formats/safetensors.test.ts": 29,
  "sdk/test/runtime/serve-adapters.test.ts": 29,
  "sdk/test/bridge/calls.test.ts": 27,
  "sdk/test/adapter/convert-loralib.test.ts": 19,
  "sdk/test/cli/json-output.test.ts": 18,
  "sdk/test/bridge/parity.test.ts": 16,
  "sdk/test/tokenizer/tokenizer.test.ts": 15,
  "sdk/test/formats/safetensors-agreement.test.ts": 12,
  "sdk/test/docs/snippets.test.ts": 11,
  "sdk/test/generation/sampler.test.ts": 11,
  "sdk/test/adapter/peft-roundtrip.test.ts": 11,
};
const UNKNOWN_S = 60;

export class LongestFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const root = this.ctx.config.root;
    const seconds = (spec: TestSpecification): number => {
      const file = relative(root, spec.moduleId);
      const listed = MEASURED_S[file] ?? Object.entries(MEASURED_S).find(([k]) => k.endsWith("/") && file.startsWith(k))?.[1];
      if (listed !== undefined) return listed;
      const cached = this.ctx.cache.getFileTestResults(`${spec.project.name}:${file}`)?.duration;
      return cached !== undefined ? cached / 1000 : UNKNOWN_S;
    };
    return [...files].map((spec) => [spec, seconds(spec)] as const).sort((a, b) => b[1] - a[1]).map(([spec]) => spec);
  }
}
