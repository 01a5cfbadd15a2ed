/**
 * A pickle virtual machine that executes nothing: every GLOBAL, REDUCE, NEWOBJ, BUILD and persistent id
 * goes through caller-supplied hooks (the torch allowlist), so a hostile pickle can only build plain data.
 * Protocols 2–4 (what torch.save writes, plus the binary opcodes of later protocols). Lengths, memo size,
 * stack size and nesting are bounded, and every value built is charged to the file's `ReadBudget` (bytes and
 * operations) before it is built, so a small pickle cannot make large work.
 *
 * Values: None → null, bool, int → number (bigint past 2^53), float → number, str → string,
 * bytes → Uint8Array, list → array, tuple → frozen array, dict → Map, set/frozenset → Set.
 */
import { FormatError } from "../../errors.js";
import { ReadBudget } from "../limits.js";

export interface PickleHooks {
  /** Resolve `module.name`; throws for anything not allowed. */
  global(module: string, name: string): unknown;
  /** REDUCE: `func(*args)`. */
  call(func: unknown, args: readonly unknown[]): unknown;
  /** NEWOBJ: `cls.__new__(cls, *args)`. */
  newobj(cls: unknown, args: readonly unknown[]): unknown;
  /** BUILD: apply `state` to `inst`; returns the (possibly replaced) instance. */
  build(inst: unknown, state: unknown): unknown;
  /** BINPERSID. */
  persistentLoad(pid: unknown): unknown;
}

export interface PickleLimits {
  readonly maxStack: number;
  readonly maxMemo: number;
  readonly maxMarks: number;
}

export const DEFAULT_LIMITS: PickleLimits = { maxStack: 10_000_000, maxMemo: 10_000_000, maxMarks: 100_000 };

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Rough V8 costs, charged to the budget: a value slot, a new object, a Map/Set/memo entry (a Map holds about
 * 40 bytes an entry and, while it grows, its old and new tables at once: measured 808 MiB peak for 9M memo keys
 * charged at 40).
 */
const SLOT = 8;
const OBJECT = 32;
const ENTRY = 96;

export function unpickle(
  file: string,
  bytes: Uint8Array,
  hooks: PickleHooks,
  limits: PickleLimits = DEFAULT_LIMITS,
  budget: ReadBudget = new ReadBudget(file, bytes.byteLength),
): unknown {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  // Counted locally (one subtraction per opcode) and settled with the budget when it runs out or at the end.
  let bytesLeft = budget.maxBytes - budget.bytesUsed;
  let opsLeft = budget.maxOps - budget.opsUsed;
  let spentBytes = 0;
  let spentOps = 0;
  const settle = () => {
    budget.charge(spentBytes, "pickle objects");
    budget.step(spentOps, () => `pickle (at byte ${pos})`);
    spentBytes = 0;
    spentOps = 0;
  };
  const cost = (n: number) => {
    spentBytes += n;
    if ((bytesLeft -= n) < 0) settle();
  };
  const work = (n: number) => {
    spentOps += n;
    if ((opsLeft -= n) < 0) settle();
  };
  let stack: unknown[] = [];
  const marks: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const fail = (msg: string): never => {
    throw new FormatError(file, `pickle: ${msg} (at byte ${pos})`);
  };
  const need = (n: number): number => {
    if (n < 0 || pos + n > bytes.byteLength) fail(`truncated: needs ${n} more bytes`);
    const at = pos;
    pos += n;
    return at;
  };
  const u8 = () => bytes[need(1)]!;
  const u16 = () => dv.getUint16(need(2), true);
  const u32 = () => dv.getUint32(need(4), true);
  const u64 = (): number => {
    const v = dv.getBigUint64(need(8), true);
    if (v > BigInt(bytes.byteLength)) fail(`length ${v} is longer than the pickle`);
    return Number(v);
  };
  const take = (n: number) => bytes.subarray(need(n), pos);
  const bytesValue = (n: number) => {
    const raw = take(n);
    cost(OBJECT * 2 + n);
    return raw.slice();
  };
  const str = (n: number): string => {
    const raw = take(n); // bounds first: a length past the end is "truncated", not a budget matter
    cost(OBJECT + 2 * n);
    try {
      return utf8.decode(raw);
    } catch {
      return fail("string is not valid UTF-8");
    }
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0 || end - pos > 1024) fail("GLOBAL name is not a short newline-terminated line");
    const s = new TextDecoder("latin1").decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  // Stack slots are charged at their high-water mark (a push that is popped again costs nothing lasting).
  let live = 0;
  let highWater = 0;
  const push = (v: unknown) => {
    if (stack.length >= limits.maxStack) fail(`stack deeper than ${limits.maxStack}`);
    if (++live > highWater) {
      highWater = live;
      cost(SLOT);
    }
    stack.push(v);
  };
  const pop = (): unknown => {
    if (stack.length === 0) fail("pop from an empty stack");
    live--;
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail("empty stack");
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = marks.pop();
    if (!prev) return fail("no MARK to pop to");
    stack = prev;
    live -= items.length;
    return items;
  };
  const put = (i: number) => {
    if (!memo.has(i)) {
      if (memo.size >= limits.maxMemo) fail(`memo larger than ${limits.maxMemo}`);
      cost(ENTRY);
    }
    memo.set(i, top());
  };
  const get = (i: number) => {
    if (!memo.has(i)) fail(`memo key ${i} was never stored`);
    return memo.get(i);
  };
  const asList = (v: unknown, op: string): unknown[] => {
    if (!Array.isArray(v) || Object.isFrozen(v)) fail(`${op} on a ${describe(v)}, expected a list`);
    return v as unknown[];
  };
  const asMap = (v: unknown, op: string): Map<unknown, unknown> => {
    if (!(v instanceof Map)) fail(`${op} on a ${describe(v)}, expected a dict`);
    return v as Map<unknown, unknown>;
  };
  const asSet = (v: unknown, op: string): Set<unknown> => {
    if (!(v instanceof Set)) fail(`${op} on a ${describe(v)}, expected a set`);
    return v as Set<unknown>;
  };
  const tuple = (items: unknown[]) => {
    work(items.length);
    cost(OBJECT + SLOT * items.length);
    return Object.freeze(items);
  };
  const setItems = (d: Map<unknown, unknown>, items: unknown[]) => {
    if (items.length % 2) fail("SETITEMS with an odd number of items");
    work(items.length);
    cost(ENTRY * (items.length / 2));
    for (let i = 0; i < items.length; i += 2) d.set(key(items[i]), items[i + 1]);
  };
  // One item at a time: `push(...items)` overflows the call stack for a few hundred thousand items.
  const appendAll = (list: unknown[], items: unknown[]) => {
    work(items.length);
    cost(SLOT * items.length);
    for (let i = 0; i < items.length; i++) list.push(items[i]);
  };

  for (;;) {
    if (--opsLeft < 0) settle();
    spentOps++;
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail("pickle protocol above 5");
        break;
      case 0x95: // FRAME: a length prefix only; the opcodes follow inline.
        need(8);
        break;
      case 0x2e: // STOP
        if (marks.length) fail("STOP inside an unclosed MARK");
        settle();
        return pop();
      case 0x28: // MARK
        if (marks.length >= limits.maxMarks) fail(`more than ${limits.maxMarks} nested MARKs`);
        cost(OBJECT);
        marks.push(stack);
        stack = [];
        break;
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: push(top()); break; // DUP
      case 0x4e: push(null); break; // NONE
      case 0x88: push(true); break; // NEWTRUE
      case 0x89: push(false); break; // NEWFALSE
      case 0x4a: push(dv.getInt32(need(4), true)); break; // BININT
      case 0x4b: push(u8()); break; // BININT1
      case 0x4d: push(u16()); break; // BININT2
      case 0x8a: { const n = u8(); cost(OBJECT + n); push(decodeLong(take(n))); break; } // LONG1
      case 0x8b: { // LONG4
        const n = dv.getInt32(need(4), true);
        if (n < 0 || n > 4096) fail(`LONG4 of ${n} bytes`);
        cost(OBJECT + n);
        push(decodeLong(take(n)));
        break;
      }
      case 0x47: cost(16); push(dv.getFloat64(need(8), false)); break; // BINFLOAT (big-endian), a heap number
      case 0x58: push(str(u32())); break; // BINUNICODE
      case 0x8c: push(str(u8())); break; // SHORT_BINUNICODE
      case 0x8d: push(str(u64())); break; // BINUNICODE8
      // BINSTRING / SHORT_BINSTRING (Python 2 str): decoded as UTF-8 text, as torch.load's default encoding does.
      case 0x54: push(str(dv.getInt32(need(4), true))); break;
      case 0x55: push(str(u8())); break;
      case 0x42: push(bytesValue(u32())); break; // BINBYTES
      case 0x43: push(bytesValue(u8())); break; // SHORT_BINBYTES
      case 0x8e: push(bytesValue(u64())); break; // BINBYTES8
      case 0x29: push(tuple([])); break; // EMPTY_TUPLE
      case 0x74: push(tuple(popMark())); break; // TUPLE
      case 0x85: push(tuple([pop()])); break; // TUPLE1
      case 0x86: { const b = pop(), a = pop(); push(tuple([a, b])); break; } // TUPLE2
      case 0x87: { const c = pop(), b = pop(), a = pop(); push(tuple([a, b, c])); break; } // TUPLE3
      case 0x5d: cost(OBJECT); push([]); break; // EMPTY_LIST
      case 0x6c: { const items = popMark(); work(items.length); cost(OBJECT + SLOT * items.length); push(items); break; } // LIST
      case 0x61: { const v = pop(); cost(SLOT); asList(top(), "APPEND").push(v); break; } // APPEND
      case 0x65: { const items = popMark(); appendAll(asList(top(), "APPENDS"), items); break; } // APPENDS
      case 0x7d: cost(OBJECT); push(new Map()); break; // EMPTY_DICT
      case 0x64: { const m = new Map(); cost(OBJECT); setItems(m, popMark()); push(m); break; } // DICT
      case 0x73: { const v = pop(), k = pop(); cost(ENTRY); asMap(top(), "SETITEM").set(key(k), v); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(asMap(top(), "SETITEMS"), items); break; } // SETITEMS
      case 0x8f: cost(OBJECT); push(new Set()); break; // EMPTY_SET
      case 0x90: { // ADDITEMS
        const items = popMark();
        const s = asSet(top(), "ADDITEMS");
        work(items.length);
        cost(ENTRY * items.length);
        for (const i of items) s.add(i);
        break;
      }
      case 0x91: { const items = popMark(); work(items.length); cost(OBJECT + ENTRY * items.length); push(new Set(items)); break; } // FROZENSET
      case 0x68: push(get(u8())); break; // BINGET
      case 0x6a: push(get(u32())); break; // LONG_BINGET
      case 0x71: put(u8()); break; // BINPUT
      case 0x72: put(u32()); break; // LONG_BINPUT
      case 0x94: put(memo.size); break; // MEMOIZE
      case 0x63: { const module = line(); const name = line(); push(hooks.global(module, name)); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop(), module = pop();
        if (typeof module !== "string" || typeof name !== "string") fail("STACK_GLOBAL needs two strings");
        push(hooks.global(module as string, name as string));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        if (!Array.isArray(args)) fail(`REDUCE arguments are a ${describe(args)}, expected a tuple`);
        const func = pop();
        push(hooks.call(func, args as unknown[]));
        break;
      }
      case 0x81: { // NEWOBJ
        const args = pop();
        if (!Array.isArray(args)) fail(`NEWOBJ arguments are a ${describe(args)}, expected a tuple`);
        const cls = pop();
        push(hooks.newobj(cls, args as unknown[]));
        break;
      }
      case 0x62: { const state = pop(); const inst = pop(); push(hooks.build(inst, state)); break; } // BUILD
      case 0x51: push(hooks.persistentLoad(pop())); break; // BINPERSID
      default:
        fail(`unsupported opcode 0x${op.toString(16).padStart(2, "0")}`);
    }
  }
}

/** Dict keys: tuples and other objects keep identity; strings and numbers compare by value as in Python. */
function key(k: unknown): unknown {
  return typeof k === "bigint" && k >= BigInt(Number.MIN_SAFE_INTEGER) && k <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(k) : k;
}

/** Two's-complement little-endian integer; a number when it is safe, else a bigint. */
function decodeLong(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
  if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

export function describe(v: unknown): string {
  if (v === null) return "None";
  if (Array.isArray(v)) return Object.isFrozen(v) ? "tuple" : "list";
  if (v instanceof Map) return "dict";
  if (v instanceof Set) return "set";
  if (v instanceof Uint8Array) return "bytes";
  if (typeof v === "object") return (v as object).constructor?.name ?? "object";
  return typeof v;
}
