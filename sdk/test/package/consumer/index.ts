// A user's script: imports loraport as a package, type-checked by tsc in the user's project, then run with node.
import { HubModelMissingError, LoraportError, Sidecar, parseHubId, readSafetensors, resolveModelPath, type Tensor } from "loraport";

const [file] = process.argv.slice(2);
const { tensors }: { tensors: Map<string, Tensor> } = await readSafetensors(file!);
// The package's types are real, not `any`: a number is not a Hub id (were it `any`, this directive would be an error).
// @ts-expect-error
const typesAreReal = (): unknown => parseHubId(42);
const missing = await resolveModelPath("loraport-test/absent", { download: false }).catch((e: unknown) => e);
const result: Record<string, unknown> = { tensors: tensors.size, hubError: missing instanceof HubModelMissingError, typesAreReal: typeof typesAreReal };
try {
  await using sc = await Sidecar.start(); // closed at scope end: the script exits by itself
  result["ping"] = (await sc.ping()) > 0;
  result["torch"] = sc.capabilities.torch;
} catch (err) {
  if (!(err instanceof LoraportError)) throw err;
  result["sidecarError"] = err.message;
}
console.log(JSON.stringify(result));
