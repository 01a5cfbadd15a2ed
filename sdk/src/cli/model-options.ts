/**
 * `--base` and `--model` of every command accept a Hugging Face Hub id as well as a folder: resolved once, before
 * the command runs, so each command sees a folder (and a download shows its bar here, not in every command).
 */
import type { Command } from "commander";
import { parseHubId } from "../hub/hub-id.js";
import { resolveModelPath } from "../hub/resolve-model.js";
import { progressBar } from "./progress-bar.js";

export async function resolveModelOptions(_program: Command, action: Command): Promise<void> {
  for (const key of ["base", "model"]) {
    const given: unknown = action.getOptionValue(key);
    if (typeof given !== "string") continue;
    const bar = action.getOptionValue("json") ? progressBar(false) : progressBar();
    let dir: string;
    try {
      dir = await resolveModelPath(given, { argument: `--${key}`, onProgress: bar.onProgress });
    } finally {
      bar.stop();
    }
    if (dir === given) continue;
    action.setOptionValue(key, dir);
    // A served model is named by its folder unless told otherwise; a snapshot folder's name is a commit hash.
    const named = action.options.some((o) => o.attributeName() === "name");
    if (named && action.getOptionValue("name") === undefined) action.setOptionValue("name", parseHubId(given)?.repo ?? given);
  }
}
