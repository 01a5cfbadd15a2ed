/**
 * The sampler's seeded pseudo-random generator: xoshiro128** 1.1 (Blackman & Vigna, 2018) — 128 bits of state,
 * period 2^128 − 1, only 32-bit integer operations (`Math.imul`, shifts), so the stream is the same on every
 * machine and engine. The 64-bit seed is expanded into the four state words by splitmix64, as the authors
 * recommend (two outputs, low word first). Not cryptographic; for sampling only.
 */
import { getRandomValues } from "node:crypto";

const MASK64 = (1n << 64n) - 1n;

/** One splitmix64 step: returns [next state, output]. */
function splitmix64(state: bigint): [bigint, bigint] {
  const s = (state + 0x9e3779b97f4a7c15n) & MASK64;
  let z = s;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return [s, z ^ (z >> 31n)];
}

/** A random 64-bit seed from the OS's CSPRNG. */
export function randomSeed(): bigint {
  return getRandomValues(new BigUint64Array(1))[0]!;
}

/** xoshiro128** seeded from a 64-bit integer. */
export class Rng {
  /** The seed this generator started from (an integer in [0, 2^64)). */
  readonly seed: bigint;
  #s0: number;
  #s1: number;
  #s2: number;
  #s3: number;

  /** `seed`: an integer in [0, 2^64) (a safe-integer number or a bigint); omitted → `randomSeed()`. */
  constructor(seed?: number | bigint) {
    const s = seed === undefined ? randomSeed() : BigInt(seed);
    if (s < 0n || s > MASK64) throw new RangeError(`seed: expected an integer in [0, 2^64), got ${s}`);
    this.seed = s;
    const [st, a] = splitmix64(s);
    const [, b] = splitmix64(st);
    // splitmix64 is a bijection of its counter, so two consecutive outputs are never both 0: the state is valid.
    this.#s0 = Number(a & 0xffffffffn) | 0;
    this.#s1 = Number(a >> 32n) | 0;
    this.#s2 = Number(b & 0xffffffffn) | 0;
    this.#s3 = Number(b >> 32n) | 0;
  }

  /** The next 32-bit output, as an unsigned integer. */
  nextUint32(): number {
    const s1 = this.#s1;
    const r = Math.imul(rotl(Math.imul(s1, 5), 7), 9);
    const t = s1 << 9;
    this.#s2 ^= this.#s0;
    this.#s3 ^= s1;
    this.#s1 = s1 ^ this.#s2;
    this.#s0 ^= this.#s3;
    this.#s2 ^= t;
    this.#s3 = rotl(this.#s3, 11);
    return r >>> 0;
  }

  /** A double uniform in [0, 1) with 53 random bits (two outputs: 27 high bits, then 26 low bits). */
  nextDouble(): number {
    const hi = this.nextUint32() >>> 5;
    const lo = this.nextUint32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
