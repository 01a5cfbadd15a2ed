/**
 * Reading a process's state from /proc when /proc may belong to another PID namespace: a CI sandbox can run us
 * in a new PID namespace with the host's /proc mounted, where /proc/<our pid> is some other process. There the
 * process is found by the last field of its NSpid line (its pid in the innermost namespace, ours).
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

function read(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** True when /proc shows this process under its own pid (the common case). */
export function procIsOurNamespace(): boolean {
  try {
    return readlinkSync("/proc/self") === String(process.pid);
  } catch {
    return false;
  }
}

/**
 * The /proc folder of the process that has `pid` in our namespace and whose command line contains `cmdline`, or
 * undefined when there is none.
 */
export function procDirOf(pid: number, cmdline: string): string | undefined {
  const matches = (dir: string): boolean => (read(`${dir}/cmdline`) ?? "").replaceAll("\0", " ").includes(cmdline);
  if (procIsOurNamespace()) {
    const dir = `/proc/${pid}`;
    return matches(dir) ? dir : undefined;
  }
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const dir = `/proc/${name}`;
    const nspid = /^NSpid:\s*(.*)$/m.exec(read(`${dir}/status`) ?? "")?.[1]?.trim().split(/\s+/);
    if (nspid?.at(-1) === String(pid) && matches(dir)) return dir;
  }
  return undefined;
}

/** The one-letter state of a /proc/<pid> or /proc/<pid>/task/<tid> folder (R, S, D, Z, ...), or "?" if gone. */
export function procState(dir: string): string {
  const stat = read(`${dir}/stat`);
  return stat === undefined ? "?" : stat.slice(stat.lastIndexOf(")") + 2)[0] ?? "?";
}

/** Per thread: id, name, state and kernel wait channel, for failure messages about a process that will not exit. */
export function describeThreads(dir: string): string {
  try {
    return readdirSync(`${dir}/task`).map((tid) => {
      const t = `${dir}/task/${tid}`;
      return `${tid} ${(read(`${t}/comm`) ?? "?").trim()} state=${procState(t)} wchan=${(read(`${t}/wchan`) ?? "?").trim()}`;
    }).join("; ");
  } catch {
    return "gone";
  }
}
