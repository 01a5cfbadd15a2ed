import { defineConfig } from "vitest/config";
import { LongestFirstSequencer } from "./sdk/test/longest-first.js";
import { limit } from "./sdk/test/helpers/timeouts.js";

export default defineConfig({
  test: {
    include: ["sdk/test/**/*.test.ts", "conformance/**/*.test.ts"],
    // Limits catch hangs only; they scale with LORAPORT_TEST_TIME_SCALE (sdk/test/helpers/timeouts.ts).
    testTimeout: limit(120_000),
    hookTimeout: limit(180_000),
    // Two cores: sidecar-heavy files run a few at a time.
    maxWorkers: 2,
    // The run's folder for fixtures several files share (sdk/test/helpers/shared-fixture.ts).
    globalSetup: ["./sdk/test/global-setup.ts"],
    // Longest files first, so both workers finish together.
    sequence: { sequencer: LongestFirstSequencer },
  },
});
