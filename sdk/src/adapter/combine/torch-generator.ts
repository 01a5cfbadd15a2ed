/**
 * torch's CPU random generator (mt19937, as `torch.manual_seed` seeds it) and `torch.bernoulli` of a
 * probability tensor on CPU: one 32-bit draw per element in row-major order, kept when
 * (draw & 0xFFFFFF)·2⁻²⁴ < f32(p). That is how PEFT's DARE draws its masks, so the same generator state
 * gives the same masks.
 */
import { ArgumentError } from "../../errors.js";

const N = 624;
const M = 397;

export class TorchCpuGenerator {
  private readonly state = new Uint32Array(N);
  private index = N;

  /** `torch.manual_seed(seed)`: torch keeps 64 bits but seeds mt19937 with the low 32. */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new ArgumentError("seed", `a non-negative integer (torch.manual_seed), got ${seed}`);
    const mt = this.state;
    mt[0] = seed % 2 ** 32;
    for (let i = 1; i < N; i++) {
      const prev = mt[i - 1]!;
      mt[i] = (Math.imul(1812433253, prev ^ (prev >>> 30)) + i) >>> 0;
    }
  }

  /** The next 32-bit output (`CPUGeneratorImpl::random()`). */
  nextUint32(): number {
    if (this.index >= N) this.twist();
    let y = this.state[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  private twist(): void {
    const mt = this.state;
    for (let i = 0; i < N; i++) {
      const y = (mt[i]! & 0x80000000) | (mt[(i + 1) % N]! & 0x7fffffff);
      mt[i] = mt[(i + M) % N]! ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
    }
    this.index = 0;
  }

  /** Advance by n 32-bit draws (what `uniform_` on n float32 values consumes). */
  skip(n: number): void {
    for (let i = 0; i < n; i++) this.nextUint32();
  }

  /** `torch.bernoulli(torch.full((n,), p))` with a float32 p: 1 = kept. */
  bernoulliMask(n: number, p: number): Uint8Array {
    // uniform_real_distribution<float>: 24 random bits scaled by 2⁻²⁴, compared with p in float32.
    const threshold = Math.fround(p) * 2 ** 24;
    const mask = new Uint8Array(n);
    for (let i = 0; i < n; i++) mask[i] = (this.nextUint32() & 0xffffff) < threshold ? 1 : 0;
    return mask;
  }
}
