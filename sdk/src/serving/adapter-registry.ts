/**
 * The adapters a server holds, by name (vLLM's `max_loras` / `max_cpu_loras` idea): at most `maxLoras` are
 * registered in the ONNX Runtime worker (factors ready to feed), at most `maxCpuLoras` kept parsed in memory; beyond
 * that an adapter is only its path and is read again on its next request. Eviction is least-recently-used among
 * adapters no running request holds. Adapters are read with loraport's own readers (PEFT folders, loralib files).
 */
import type { LoraAdapter } from "../adapter/adapter.js";
import type { LoralibOptions } from "../adapter/loralib.js";
import { AdapterError } from "../errors.js";
import type { LoraModel } from "../runtime/lora-model.js";
import { readAdapterFromPath } from "../runtime/read-adapter.js";

export interface AdapterRegistryOptions {
  /** Adapters registered in the session at once (default 8). */
  readonly maxLoras?: number;
  /** Adapters kept parsed in memory, registered or not (default 32; at least `maxLoras`). */
  readonly maxCpuLoras?: number;
  /** Hyper-parameters for loralib checkpoints (they store none). */
  readonly loralib?: LoralibOptions;
}

interface Entry {
  readonly path: string;
  adapter: LoraAdapter | undefined;
  registered: boolean;
  inUse: number;
  lastUsed: number;
}

export class AdapterRegistry {
  readonly maxLoras: number;
  readonly maxCpuLoras: number;
  readonly #model: LoraModel;
  readonly #loralib: LoralibOptions;
  readonly #entries = new Map<string, Entry>();
  readonly #waiting: (() => void)[] = [];
  #clock = 0;

  constructor(model: LoraModel, options: AdapterRegistryOptions = {}) {
    this.#model = model;
    this.maxLoras = Math.max(1, options.maxLoras ?? 8);
    this.maxCpuLoras = Math.max(this.maxLoras, options.maxCpuLoras ?? 32);
    this.#loralib = options.loralib ?? {};
  }

  names(): string[] {
    return [...this.#entries.keys()];
  }

  has(name: string): boolean {
    return this.#entries.has(name);
  }

  get activeCount(): number {
    return [...this.#entries.values()].filter((e) => e.registered).length;
  }

  /** Read an adapter (checked against the graph now, so a wrong one fails here, not on its first request). */
  async load(name: string, path: string): Promise<void> {
    if (!name) throw new AdapterError("lora_name: expected a non-empty adapter name");
    const { adapter } = await readAdapterFromPath(path, { fanInFanOut: this.#model.manifest.lora.some((e) => e.fan_in_fan_out), ...this.#loralib });
    const old = this.#entries.get(name);
    if (old && old.inUse > 0) throw new AdapterError(`adapter '${name}' is in use by running requests; unload it first or use another name`);
    if (old?.registered) await this.#model.unregisterAdapter(name);
    const entry: Entry = { path, adapter, registered: false, inUse: 0, lastUsed: ++this.#clock };
    this.#entries.set(name, entry);
    await this.#register(name, entry);
    this.#trimCpu();
  }

  async unload(name: string): Promise<void> {
    const e = this.#entries.get(name);
    if (!e) throw new AdapterError(`adapter '${name}' is not loaded (loaded: ${this.names().join(", ") || "none"})`);
    this.#entries.delete(name);
    if (e.registered) await this.#model.unregisterAdapter(name);
    this.#wake();
  }

  /** Make `name` ready in the session and hold it for one request; waits while every slot is held. */
  async acquire(name: string): Promise<void> {
    for (;;) {
      const e = this.#entries.get(name);
      if (!e) throw new AdapterError(`adapter '${name}' is not loaded (loaded: ${this.names().join(", ") || "none"})`);
      e.lastUsed = ++this.#clock;
      if (e.registered || (await this.#register(name, e))) {
        e.inUse++;
        return;
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
  }

  /** `acquire` without waiting: false when every slot is held by running requests (try again after one ends). */
  async tryAcquire(name: string): Promise<boolean> {
    const e = this.#entries.get(name);
    if (!e) throw new AdapterError(`adapter '${name}' is not loaded (loaded: ${this.names().join(", ") || "none"})`);
    e.lastUsed = ++this.#clock;
    if (!e.registered && !(await this.#register(name, e))) return false;
    e.inUse++;
    return true;
  }

  release(name: string): void {
    const e = this.#entries.get(name);
    if (e && e.inUse > 0) e.inUse--;
    this.#wake();
  }

  /** Register `e` in the session, evicting the least recently used idle adapter if the slots are full; false if none can go. */
  async #register(name: string, e: Entry): Promise<boolean> {
    const active = [...this.#entries.entries()].filter(([, x]) => x.registered);
    if (active.length >= this.maxLoras) {
      const idle = active.filter(([, x]) => x.inUse === 0).sort((a, b) => a[1].lastUsed - b[1].lastUsed)[0];
      if (!idle) return false;
      idle[1].registered = false;
      await this.#model.unregisterAdapter(idle[0]);
    }
    e.adapter ??= (await readAdapterFromPath(e.path, { fanInFanOut: this.#model.manifest.lora.some((x) => x.fan_in_fan_out), ...this.#loralib })).adapter;
    await this.#model.registerAdapter(name, e.adapter);
    e.registered = true;
    this.#trimCpu();
    return true;
  }

  /** Drop parsed adapters past `maxCpuLoras` (least recently used, unregistered ones first); their paths stay. */
  #trimCpu(): void {
    const parsed = [...this.#entries.values()].filter((x) => x.adapter !== undefined && !x.registered).sort((a, b) => a.lastUsed - b.lastUsed);
    const held = [...this.#entries.values()].filter((x) => x.adapter !== undefined).length;
    for (let i = 0; i < held - this.maxCpuLoras && i < parsed.length; i++) parsed[i]!.adapter = undefined;
  }

  #wake(): void {
    for (const w of this.#waiting.splice(0)) w();
  }
}
