/**
 * loralib `ConvLoRA` (lora.Conv2d) → PEFT conv LoRA, exactly.
 *
 * loralib stores A `[r·k, in·k]`, B `[(out/groups)·k, r·k]` and merges ΔW = s·(B·A).view(weight.shape): the
 * `[out·k, in·k]` product is read row-major as `[out, in, k, k]`. PEFT's conv LoRA is ΔW = s·B'·A' over the
 * flattened kernel `[out, in·k·k]` with A' `[r', in, k, k]`, B' `[out, r', 1, 1]`. The two flattenings differ, so
 * the factors are not a reshape. In PEFT's flattening, row o of ΔW is rows o·k … o·k+k−1 of B·A side by side, so
 * ΔW = B̃·Ã with Ã = blockdiag(A, …, A) (k copies, `[r·k², in·k²]`) and B̃[o, j·r·k + q] = B[o·k + j, q]: the
 * same products and sums as loralib's, only zeros added, so no SVD and no approximation. That rank r·k² is the
 * generic rank of ΔW unless `out` or `in·k²` is smaller; then ΔW itself is the one factor and the identity the
 * other (exact too: multiplying by 1 and adding 0 rounds nothing), with the scaling folded into ΔW.
 *
 * From the factors alone only square 2-D kernels (loralib's `kernel_size` is an int) with k > 1 are recognised:
 * loralib's Conv1d and Conv3d only run with kernel_size 1 (its view fails otherwise), and any 1×…×1 ConvLoRA has
 * Linear-shaped factors that the checkpoint cannot tell from lora.Linear. `groups > 1` cannot be told from the
 * factors either. Given the base's weight shapes (`convertLoralibConvForBase`), both are settled: 1×…×1 kernels
 * of any dimension become PEFT conv LoRA of the same rank (B·A is already PEFT's flattening), grouped convs are
 * refused (PEFT does not merge LoRA on them). Without the base, groups = 1 is assumed, and a grouped base then fails
 * PEFT's and loraport's shape checks loudly.
 */
import { AdapterError, ShapeMismatchError, UnsupportedFeatureError } from "../errors.js";
import { toFloat32, type Tensor } from "../tensor/index.js";
import { convKindForSpatialDims, type LoraModule } from "./adapter.js";
import { addLowRank } from "./math.js";

/** The kernel size k when a loralib module's factors are ConvLoRA's (B has r·k columns, k > 1), else undefined. */
export function loralibConvKernel(A: Tensor, B: Tensor, r: number): number | undefined {
  if (A.shape.length !== 2 || B.shape.length !== 2) return undefined;
  const [aRows, aCols] = A.shape as [number, number];
  const [bRows, bCols] = B.shape as [number, number];
  if (bCols === r || bCols !== aRows || bCols % r !== 0) return undefined;
  const k = bCols / r;
  return k > 1 && aCols % k === 0 && bRows % k === 0 ? k : undefined;
}

export interface ConvertedLoralibConv {
  readonly module: LoraModule;
  /** PEFT rank r' and lora_alpha' for this module (its rank_pattern / alpha_pattern entries). */
  readonly rank: number;
  readonly alpha: number;
  /** How the rank came out, for the conversion report. */
  readonly how: string;
}

/**
 * One loralib Conv2d module (kernel k×k, groups 1) as an exact PEFT conv2d LoRA module. `alpha / r` is loralib's
 * scaling s; the result has alpha'/r' = s (structural factors) or alpha' = r' with s folded into ΔW.
 */
export function convertLoralibConv(name: string, A: Tensor, B: Tensor, r: number, alpha: number, k: number): ConvertedLoralibConv {
  const [rk, inK] = A.shape as [number, number];
  const [outK] = B.shape as [number, number];
  if (rk !== r * k) throw new AdapterError(`${name}: loralib conv lora_A [${A.shape.join(", ")}] does not have r·k = ${r * k} rows`, { code: "E_RANK" });
  const nIn = inK / k;
  const out = outK / k;
  const n = nIn * k * k;
  const structural = r * k * k;
  const a = toFloat32(A);
  const b = toFloat32(B);
  const s = alpha / r;
  const kernel = [nIn, k, k];
  if (structural <= out && structural <= n) {
    // Ã: k copies of A down the diagonal; B̃: the k rows of B that make one output row, side by side.
    const At = new Float32Array(structural * n);
    for (let j = 0; j < k; j++) {
      for (let q = 0; q < rk; q++) At.set(a.subarray(q * inK, (q + 1) * inK), (j * rk + q) * n + j * inK);
    }
    const Bt = new Float32Array(out * structural);
    for (let o = 0; o < out; o++) {
      for (let j = 0; j < k; j++) Bt.set(b.subarray((o * k + j) * rk, (o * k + j + 1) * rk), o * structural + j * rk);
    }
    return {
      module: { kind: "conv2d", A: { dtype: "F32", shape: [structural, ...kernel], data: At }, B: { dtype: "F32", shape: [out, structural, 1, 1], data: Bt } },
      rank: structural,
      alpha: alpha * k * k,
      how: `rank r·k² = ${r}·${k}² = ${structural} (loralib's B·A rearranged: block-diagonal A, B's k rows per output side by side; lora_alpha ${alpha}·${k}² keeps scaling ${s})`,
    };
  }
  // ΔW in PEFT's flattening [out, in·k·k] is loralib's f32(f32(B·A)·s) in its own memory order.
  const delta = new Float32Array(outK * inK);
  addLowRank(delta, outK, inK, b, a, rk, s);
  if (out <= n) {
    const I = new Float32Array(out * out);
    for (let i = 0; i < out; i++) I[i * out + i] = 1;
    return {
      module: { kind: "conv2d", A: { dtype: "F32", shape: [out, ...kernel], data: delta }, B: { dtype: "F32", shape: [out, out, 1, 1], data: I } },
      rank: out,
      alpha: out,
      how: `rank out = ${out} < r·k² = ${structural} (lora_A holds ΔW with the scaling ${s} folded in, lora_B the identity; lora_alpha = r' so scaling 1)`,
    };
  }
  const I = new Float32Array(n * n);
  for (let i = 0; i < n; i++) I[i * n + i] = 1;
  return {
    module: { kind: "conv2d", A: { dtype: "F32", shape: [n, ...kernel], data: I }, B: { dtype: "F32", shape: [out, n, 1, 1], data: delta } },
    rank: n,
    alpha: n,
    how: `rank in·k² = ${n} < r·k² = ${structural} (lora_B holds ΔW with the scaling ${s} folded in, lora_A the identity; lora_alpha = r' so scaling 1)`,
  };
}

/**
 * One loralib ConvLoRA module whose base conv weight has shape `weightShape` (`[out, in/groups, k…]`), as an exact
 * PEFT conv LoRA: what the factors alone cannot say (1×…×1 kernels, Conv1d/Conv3d, groups) comes from the base.
 */
export function convertLoralibConvForBase(name: string, A: Tensor, B: Tensor, r: number, alpha: number, weightShape: readonly number[]): ConvertedLoralibConv {
  const kind = convKindForSpatialDims(weightShape.length - 2);
  if (!kind) throw new UnsupportedFeatureError("target_modules", `${name}: base weight [${weightShape.join(", ")}] is no Conv1d/2d/3d weight`);
  const [out, inPerGroup, ...kernel] = weightShape as [number, number, ...number[]];
  const [rk, inK] = A.shape as [number, number];
  const [outK, bCols] = B.shape as [number, number];
  const k = rk / r;
  const fits = Number.isInteger(k) && bCols === rk && inK % k === 0 && outK % k === 0;
  if (!fits) throw new ShapeMismatchError(name, `loralib conv lora_A [${A.shape.join(", ")}] / lora_B [${B.shape.join(", ")}] with r=${r} do not fit ConvLoRA's A [r·k, in·k], B [out/groups·k, r·k]`);
  const nIn = inK / k;
  const groups = nIn / inPerGroup;
  if (groups !== 1) {
    throw new UnsupportedFeatureError("groups", `${name}: loralib conv on a base with groups=${Number.isInteger(groups) ? groups : `${nIn}/${inPerGroup}`} (weight [${weightShape.join(", ")}]): PEFT does not merge LoRA on grouped convs ("Merging is not supported for _ConvNd layers with groups > 1"), so loraport does not convert it; merge it with loralib instead`);
  }
  if (outK / k !== out) throw new ShapeMismatchError(name, `loralib conv lora_B [${B.shape.join(", ")}] has ${outK}/${k} = ${outK / k} outputs but the base weight [${weightShape.join(", ")}] has ${out}`, weightShape);
  if (kernel.every((d) => d === 1)) {
    // k = 1: loralib's B·A `[out, in]` viewed as `[out, in, 1…]` is PEFT's flattening already; same rank, same scaling.
    if (k !== 1) throw new ShapeMismatchError(name, `loralib conv factors of kernel ${k} for a 1×…×1 base weight [${weightShape.join(", ")}]`, weightShape);
    const ones = kernel.map(() => 1);
    return {
      module: { kind, A: { ...A, shape: [r, nIn, ...ones] }, B: { ...B, shape: [out, r, ...ones] } },
      rank: r,
      alpha,
      how: `rank r = ${r} (1×…×1 kernel: loralib's factors are PEFT's, reshaped)`,
    };
  }
  if (kind !== "conv2d" || kernel.some((d) => d !== k)) {
    throw new UnsupportedFeatureError("kernel_size", `${name}: loralib ConvLoRA on a ${kind === "nn_conv1d" ? "Conv1d" : kind === "conv3d" ? "Conv3d" : "Conv2d"} with kernel [${kernel.join(", ")}]: loralib's own (B·A).view(weight.shape) only fits square 2-D kernels (its Conv1d/Conv3d run with kernel_size 1 only)`);
  }
  return convertLoralibConv(name, A, B, r, alpha, k);
}
