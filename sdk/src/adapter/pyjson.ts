/**
 * JSON as Python's `json` module reads and writes it, for `adapter_config.json`.
 *
 * Why not JSON.parse/stringify: PEFT writes `json.dumps(indent=2, sort_keys=True)` with Python float repr
 * (`16.0`, `1e-05`) and `ensure_ascii`. JSON.parse forgets whether `16.0` was a float, so the reader here
 * records the path of every number written in float style, and the writer takes that set back.
 */
import { FormatError } from "../errors.js";

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Path of a value inside a document: keys and indices joined by "/" (e.g. `alpha_pattern/q_proj`). */
export type JsonPath = string;

export interface PyJsonDocument {
  readonly value: JsonValue;
  /** Paths of numbers written in float style (with `.`, `e`, or NaN/Infinity). */
  readonly floatPaths: ReadonlySet<JsonPath>;
}

export function joinPath(parent: JsonPath, key: string | number): JsonPath {
  return parent === "" ? String(key) : `${parent}/${key}`;
}

/** Parse JSON (plus Python's `NaN`, `Infinity`, `-Infinity`), remembering which numbers were floats. */
export function parsePyJson(text: string, file: string): PyJsonDocument {
  const floatPaths = new Set<JsonPath>();
  let i = 0;
  const fail = (what: string): never => {
    const line = text.slice(0, i).split("\n").length;
    throw new FormatError(file, `invalid JSON at line ${line}: ${what}`);
  };
  const ws = (): void => {
    while (i < text.length && " \t\n\r".includes(text[i]!)) i++;
  };
  const value = (path: JsonPath): JsonValue => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj: { [key: string]: JsonValue } = {};
      ws();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a string key");
        const key = string();
        ws();
        if (text[i] !== ":") fail(`expected ':' after key "${key}"`);
        i++;
        obj[key] = value(joinPath(path, key));
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const arr: JsonValue[] = [];
      ws();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value(joinPath(path, arr.length)));
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    for (const [word, v] of [["true", true], ["false", false], ["null", null]] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    for (const [word, v] of [["NaN", NaN], ["Infinity", Infinity], ["-Infinity", -Infinity]] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        floatPaths.add(path);
        return v;
      }
    }
    const m = /^-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 64));
    if (!m) return fail(`unexpected ${c === undefined ? "end of file" : `'${c}'`}`);
    i += m[0].length;
    if (m[1] !== undefined || m[2] !== undefined) floatPaths.add(path);
    return Number(m[0]);
  };
  const string = (): string => {
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    if (i >= text.length) fail("unterminated string");
    i++;
    try {
      return JSON.parse(text.slice(start, i)) as string;
    } catch {
      return fail("bad string escape");
    }
  };
  const v = value("");
  ws();
  if (i !== text.length) fail("trailing characters after the document");
  return { value: v, floatPaths };
}

/** Python `repr(float)`: shortest round-trip digits, exponent form outside 1e-4 ≤ |x| < 1e16, always a `.0` or exponent. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "Infinity";
  if (x === -Infinity) return "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mant, expStr] = x.toExponential().split("e") as [string, string];
  const exp = Number(expStr);
  const neg = mant.startsWith("-");
  const digits = mant.replace("-", "").replace(".", "");
  if (exp >= -4 && exp < 16) {
    let s: string;
    if (exp < 0) s = `0.${"0".repeat(-exp - 1)}${digits}`;
    else if (digits.length > exp + 1) s = `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
    else s = `${digits}${"0".repeat(exp + 1 - digits.length)}.0`;
    return (neg ? "-" : "") + s;
  }
  const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  const e = `${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  return `${neg ? "-" : ""}${m}e${e}`;
}

/** `json.dumps(value, indent=2, sort_keys=True)` with `ensure_ascii=True`; numbers at `floatPaths` (or non-integers) in float style. */
export function dumpsPy(value: JsonValue, floatPaths: ReadonlySet<JsonPath> = new Set(), indent = 2): string {
  const out = (v: JsonValue, path: JsonPath, depth: number): string => {
    if (v === null) return "null";
    if (typeof v === "boolean") return v ? "true" : "false";
    if (typeof v === "number") return floatPaths.has(path) || !Number.isInteger(v) ? pyFloatRepr(v) : String(v);
    if (typeof v === "string") return pyString(v);
    const pad = " ".repeat(indent * (depth + 1));
    const end = " ".repeat(indent * depth);
    if (Array.isArray(v)) {
      if (v.length === 0) return "[]";
      return `[\n${v.map((x, k) => pad + out(x, joinPath(path, k), depth + 1)).join(",\n")}\n${end}]`;
    }
    const keys = Object.keys(v).sort(comparePy);
    if (keys.length === 0) return "{}";
    return `{\n${keys.map((k) => `${pad}${pyString(k)}: ${out(v[k]!, joinPath(path, k), depth + 1)}`).join(",\n")}\n${end}}`;
  };
  return out(value, "", 0);
}

/** Python sorts str by code point; JS `<` compares UTF-16 units. Same for the BMP, which is all config keys use. */
function comparePy(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function pyString(s: string): string {
  let r = '"';
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k);
    const ch = s[k]!;
    if (ch === '"') r += '\\"';
    else if (ch === "\\") r += "\\\\";
    else if (ch === "\n") r += "\\n";
    else if (ch === "\r") r += "\\r";
    else if (ch === "\t") r += "\\t";
    else if (ch === "\b") r += "\\b";
    else if (ch === "\f") r += "\\f";
    else if (c < 0x20 || c > 0x7e) r += `\\u${c.toString(16).padStart(4, "0")}`;
    else r += ch;
  }
  return `${r}"`;
}
