/**
 * How a value a caller passed is shown in an error message: short, and never throwing itself (BigInt, symbols,
 * cycles and proxies break `JSON.stringify` or template strings).
 */
export function describeValue(v: unknown): string {
  try {
    if (v === null) return "null";
    switch (typeof v) {
      case "undefined":
        return "undefined";
      case "string":
        return v.length > 40 ? `a string ${JSON.stringify(v.slice(0, 40))}…` : `the string ${JSON.stringify(v)}`;
      case "number":
        return String(v);
      case "bigint":
        return `the BigInt ${v}n`;
      case "boolean":
        return String(v);
      case "symbol":
        return "a symbol";
      case "function":
        return "a function";
      default: {
        if (Array.isArray(v)) return `an array of ${v.length}`;
        if (ArrayBuffer.isView(v)) return `a ${v.constructor.name} of ${"length" in v ? (v as { length: number }).length : v.byteLength}`;
        const proto = Object.getPrototypeOf(v) as { constructor?: { name?: string } } | null;
        const name = proto?.constructor?.name;
        return !name || name === "Object" ? "an object" : `a ${name}`;
      }
    }
  } catch {
    return "a value that cannot be inspected";
  }
}

/** `base.key` for identifier-like keys, `base["key"]` otherwise (error paths into a caller's object). */
export function pathOf(base: string, key: string | number): string {
  if (typeof key === "number") return `${base}[${key}]`;
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${base}.${key}` : `${base}[${JSON.stringify(key)}]`;
}
