import { adapterStep } from "./adapter-step.js";
import { formatsStep } from "./formats-step.js";
import type { DemoStep } from "./step.js";
import { ortStep } from "./ort-step.js";
import { serveStep } from "./serve-step.js";
import { sidecarStep } from "./sidecar-step.js";
import { trainStep } from "./train-step.js";

/** The demo's steps in order: formats → adapters → sidecar → ONNX Runtime (and generation) → serving → training. */
export const DEMO_STEPS: readonly DemoStep[] = [formatsStep, adapterStep, sidecarStep, ortStep, serveStep, trainStep];
