/**
 * Greedy decoding in node-llama-cpp with the settings the GGUF tests compare under: an F32 KV cache (llama.cpp's
 * default F16 cache alone moves these logits by ~5e-2), one thread (the machine is shared), no flash attention; and
 * the largest difference of centred logits to PyTorch's log-probabilities while the token prefixes agree
 * (llama.cpp reports probabilities, so logits are compared relative to the top token).
 */
import type { LlamaModel, Token } from "node-llama-cpp";

/** |Δ(logit_i − logit_top)| between llama.cpp F32 and PyTorch F32 over tokens with p > 1e-4 (the GGUF tests' bound). */
export const LOGIT_TOL = 1e-3;

export interface PeftReference {
  readonly tokens: readonly number[];
  /** Per step, PyTorch's log-softmax over the vocabulary. */
  readonly logprobs: readonly (readonly number[])[];
}

export async function llamaGreedy(model: LlamaModel, prompt: readonly number[], steps: number, expected?: PeftReference, loraFile?: string): Promise<{ tokens: number[]; maxLogitDiff: number }> {
  const ctx = await model.createContext({
    contextSize: 64, threads: 1, flashAttention: false, experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
    ...(loraFile !== undefined ? { lora: { adapters: [{ filePath: loraFile }] } } : {}),
  });
  try {
    const tokens: number[] = [];
    let maxLogitDiff = 0;
    for await (const o of ctx.getSequence().evaluateWithMetadata(prompt as Token[], { probabilities: true }, { temperature: 0, yieldEogToken: true })) {
      const i = tokens.length;
      tokens.push(o.token);
      // After a different token the contexts differ: compare only while the prefixes agree.
      if (expected && expected.tokens.slice(0, i).every((t, k) => t === tokens[k])) {
        const [top, pTop] = o.probabilities.entries().next().value!;
        const lp = expected.logprobs[i]!;
        for (const [t, pr] of o.probabilities) {
          if (pr > 1e-4) maxLogitDiff = Math.max(maxLogitDiff, Math.abs(Math.log(pr) - Math.log(pTop) - (lp[t]! - lp[top]!)));
        }
      }
      if (tokens.length >= steps) break;
    }
    return { tokens, maxLogitDiff };
  } finally {
    await ctx.dispose();
  }
}
