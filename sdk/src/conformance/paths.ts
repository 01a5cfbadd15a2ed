/** Where the repository is, for the conformance runner: the package root and the reference folder. */
export { packageRoot as repoRoot } from "../internal/package-root.js";
export { referenceDir as conformanceReferenceDir } from "../reference.js";
