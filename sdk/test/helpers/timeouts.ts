/**
 * Time limits for tests. They are there to stop a hang, never to measure speed, so they are generous and scale with
 * the machine: every limit is multiplied by LORAPORT_TEST_TIME_SCALE (default 3). On a 2-core machine running other
 * work the suite has taken 4× its quiet time; raise the scale further on slower machines rather than editing numbers.
 */
const raw = Number(process.env.LORAPORT_TEST_TIME_SCALE ?? "3");

/** The factor applied to every limit (at least 1). */
export const TIME_SCALE = Number.isFinite(raw) && raw >= 1 ? raw : 3;

/** `ms` (the limit on a quiet 2-core machine) scaled for this machine. */
export function limit(ms: number): number {
  return Math.round(ms * TIME_SCALE);
}
