/**
 * The globals a torch checkpoint's pickle may name — exactly those `torch.load(weights_only=True)` admits
 * (torch 2.13 `_get_allowed_globals()`), and of those, the ones loraport can build. Anything outside
 * torch's list is an UnsafePickleError; a name on torch's list that loraport does not build (sparse,
 * quantized, complex, nested tensors) is a FormatError saying so. No global ever runs code: each one
 * maps to a small function here that builds plain data.
 */
import { FormatError, UnsafePickleError } from "../../errors.js";
import { TORCH_TO_DTYPE, type DType } from "../../tensor/dtype.js";
import { ReadBudget } from "../limits.js";
import { describe, type PickleHooks } from "./pickle.js";

/** torch 2.13 `torch._weights_only_unpickler._get_allowed_globals()`, keys only (checked against torch in the tests). */
export const TORCH_WEIGHTS_ONLY_GLOBALS: ReadonlySet<string> = new Set(`
_codecs.encode builtins.bytearray builtins.complex builtins.set collections.Counter collections.OrderedDict
torch.BFloat16Storage torch.BFloat16Tensor torch.BoolStorage torch.BoolTensor torch.ByteStorage torch.ByteTensor
torch.CharStorage torch.CharTensor torch.ComplexDoubleStorage torch.ComplexFloatStorage torch.DoubleStorage
torch.DoubleTensor torch.FloatStorage torch.FloatTensor torch.HalfStorage torch.HalfTensor torch.IntStorage
torch.IntTensor torch.LongStorage torch.LongTensor torch.QInt32Storage torch.QInt8Storage torch.QUInt2x4Storage
torch.QUInt4x2Storage torch.QUInt8Storage torch.ShortStorage torch.ShortTensor torch.Size torch.Tensor
torch._tensor._rebuild_from_type_v2 torch._utils._rebuild_device_tensor_from_cpu_tensor
torch._utils._rebuild_device_tensor_from_numpy torch._utils._rebuild_meta_tensor_no_storage
torch._utils._rebuild_nested_tensor torch._utils._rebuild_parameter torch._utils._rebuild_parameter_with_state
torch._utils._rebuild_qtensor torch._utils._rebuild_sparse_tensor torch._utils._rebuild_tensor
torch._utils._rebuild_tensor_v2 torch._utils._rebuild_tensor_v3 torch._utils._rebuild_wrapper_subclass
torch.bfloat16 torch.bits16 torch.bits1x8 torch.bits2x4 torch.bits4x2 torch.bits8 torch.bool torch.complex128
torch.complex32 torch.complex64 torch.cuda.BFloat16Storage torch.cuda.BFloat16Tensor torch.cuda.BoolStorage
torch.cuda.BoolTensor torch.cuda.ByteStorage torch.cuda.ByteTensor torch.cuda.CharStorage torch.cuda.CharTensor
torch.cuda.ComplexDoubleStorage torch.cuda.ComplexFloatStorage torch.cuda.DoubleStorage torch.cuda.DoubleTensor
torch.cuda.FloatStorage torch.cuda.FloatTensor torch.cuda.HalfStorage torch.cuda.HalfTensor torch.cuda.IntStorage
torch.cuda.IntTensor torch.cuda.LongStorage torch.cuda.LongTensor torch.cuda.ShortStorage torch.cuda.ShortTensor
torch.cuda.sparse.BFloat16Tensor torch.cuda.sparse.ByteTensor torch.cuda.sparse.CharTensor
torch.cuda.sparse.DoubleTensor torch.cuda.sparse.FloatTensor torch.cuda.sparse.HalfTensor
torch.cuda.sparse.IntTensor torch.cuda.sparse.LongTensor torch.cuda.sparse.ShortTensor torch.device
torch.float16 torch.float32 torch.float4_e2m1fn_x2 torch.float64 torch.float8_e4m3fn torch.float8_e4m3fnuz
torch.float8_e5m2 torch.float8_e5m2fnuz torch.float8_e8m0fnu torch.int1 torch.int16 torch.int2 torch.int3
torch.int32 torch.int4 torch.int5 torch.int6 torch.int64 torch.int7 torch.int8 torch.nn.parameter.Parameter
torch.per_channel_affine torch.per_channel_affine_float_qparams torch.per_channel_symmetric torch.per_tensor_affine
torch.per_tensor_symmetric torch.qint32 torch.qint8 torch.quint2x4 torch.quint4x2 torch.quint8
torch.serialization._get_layout torch.sparse.BFloat16Tensor torch.sparse.ByteTensor torch.sparse.CharTensor
torch.sparse.DoubleTensor torch.sparse.FloatTensor torch.sparse.HalfTensor torch.sparse.IntTensor
torch.sparse.LongTensor torch.sparse.ShortTensor torch.storage.TypedStorage torch.storage.UntypedStorage
torch.uint1 torch.uint16 torch.uint2 torch.uint3 torch.uint32 torch.uint4 torch.uint5 torch.uint6 torch.uint64
torch.uint7 torch.uint8`.trim().split(/\s+/));

/** Python 2 module names pickle protocol 2 may use (pickle's own NAME_MAPPING, the parts that matter here). */
const MODULE_RENAMES: Readonly<Record<string, string>> = { __builtin__: "builtins", copy_reg: "copyreg" };

/** A storage class named by the pickle; `dtype` undefined for UntypedStorage (bytes). */
export class StorageClass {
  constructor(readonly fullName: string, readonly dtype: DType | undefined) {}
}

/** A torch dtype object (`torch.float32`). */
export class TorchDType {
  constructor(readonly torchName: string, readonly dtype: DType | undefined) {}
}

/** A storage referenced by a persistent id: data lives in the zip at `<folder>/data/<key>`. */
export class StorageRef {
  constructor(readonly key: string, readonly cls: StorageClass, readonly location: string, readonly numel: number) {}
}

/** A tensor as the pickle describes it; materialised once the storage bytes are read. */
export class PendingTensor {
  constructor(
    readonly storage: StorageRef,
    readonly dtype: DType,
    readonly offset: number,
    readonly size: readonly number[],
    readonly stride: readonly number[],
  ) {}
}

/** An allowlisted callable: builds data from its arguments, nothing else. */
class SafeCallable {
  constructor(readonly fullName: string, readonly fn: (args: readonly unknown[]) => unknown) {}
}

const LEGACY_STORAGE_DTYPES: Readonly<Record<string, DType>> = {
  DoubleStorage: "F64", FloatStorage: "F32", HalfStorage: "F16", BFloat16Storage: "BF16", LongStorage: "I64",
  IntStorage: "I32", ShortStorage: "I16", CharStorage: "I8", ByteStorage: "U8", BoolStorage: "BOOL",
};

/** Hooks for `unpickle` that admit what torch's weights_only loader admits, as plain data. */
export function torchPickleHooks(file: string, budget: ReadBudget = new ReadBudget(file, 0)): PickleHooks & { storages: Map<string, StorageRef> } {
  const bad = (msg: string): never => {
    throw new FormatError(file, `torch checkpoint: ${msg}`);
  };
  const unsupported = (full: string, what: string): never => {
    throw new FormatError(file, `torch checkpoint uses ${full} (${what}); torch.load(weights_only=True) allows it but loraport does not read it`);
  };
  const storages = new Map<string, StorageRef>();

  const int = (v: unknown, what: string): number => {
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) bad(`${what} is ${typeof v === "number" ? v : `a ${describe(v)}`}, expected a non-negative integer`);
    return v as number;
  };
  const ints = (v: unknown, what: string): number[] => {
    if (!Array.isArray(v)) return bad(`${what} is a ${describe(v)}, expected a tuple of integers`);
    if (v.length > 64) bad(`${what} has ${v.length} dimensions`);
    return v.map((x, i) => int(x, `${what}[${i}]`));
  };
  const rebuild = (full: string, storage: unknown, offset: unknown, size: unknown, stride: unknown, dtypeArg?: unknown): PendingTensor => {
    if (!(storage instanceof StorageRef)) return bad(`${full} got a ${describe(storage)} where a storage was expected`);
    let dtype = storage.cls.dtype;
    if (dtypeArg !== undefined) {
      if (!(dtypeArg instanceof TorchDType)) return bad(`${full} got a ${describe(dtypeArg)} where a dtype was expected`);
      if (!dtypeArg.dtype) return unsupported(`torch.${dtypeArg.torchName}`, "a dtype without a safetensors equivalent");
      dtype = dtypeArg.dtype;
    }
    if (!dtype) return bad(`${full} on an untyped storage without a dtype`);
    const s = ints(size, "tensor size");
    const st = ints(stride, "tensor stride");
    if (s.length !== st.length) bad(`tensor size has ${s.length} dimensions but stride has ${st.length}`);
    return new PendingTensor(storage, dtype, int(offset, "storage offset"), s, st);
  };

  const tensorArg = (v: unknown, what: string): PendingTensor => {
    if (!(v instanceof PendingTensor)) return bad(`${what} got a ${describe(v)} where a tensor was expected`);
    return v;
  };
  const pairs = (v: unknown): Array<[unknown, unknown]> => {
    if (v === undefined) return [];
    if (v instanceof Map) return copied(v.size, "OrderedDict", () => [...v]);
    if (!Array.isArray(v)) return bad(`OrderedDict(${describe(v)})`);
    return copied(v.length, "OrderedDict", () => v.map((p) => (Array.isArray(p) && p.length === 2 ? [p[0], p[1]] : bad("OrderedDict items must be pairs"))));
  };
  // A REDUCE can copy a memoised container many times for a few bytes each: every copy is charged.
  const copied = <T>(n: number, what: string, make: () => T): T => {
    budget.step(n, () => `${what} copy`);
    budget.charge(64 + 48 * n, `${what} copy`);
    return make();
  };
  // Device and layout names are short strings (or an index); anything else is refused, not stringified (a deep
  // tuple stringifies recursively).
  const name = (v: unknown, what: string): string => {
    if (typeof v === "string" && v.length <= 256) return v;
    if (typeof v === "number" && Number.isSafeInteger(v)) return String(v);
    return bad(`${what} is a ${describe(v)}, expected a short string`);
  };

  const fns: Record<string, (args: readonly unknown[]) => unknown> = {
    "collections.OrderedDict": (a) => new Map(pairs(a[0])),
    "collections.Counter": (a) => (a[0] instanceof Map ? copied(a[0].size, "Counter", () => new Map(a[0] as Map<unknown, unknown>)) : new Map()),
    "builtins.set": (a) => (Array.isArray(a[0]) ? copied(a[0].length, "set", () => new Set(a[0] as unknown[])) : new Set()),
    "builtins.bytearray": (a) => {
      if (!(a[0] instanceof Uint8Array)) return new Uint8Array(0);
      budget.charge(64 + a[0].byteLength, "bytearray copy");
      return a[0].slice();
    },
    "_codecs.encode": (a) => {
      // Protocol 2 writes bytes as _codecs.encode(latin-1 text, "latin1").
      const [text, enc] = a;
      if (typeof text !== "string" || (enc !== "latin1" && enc !== "latin-1")) return bad(`_codecs.encode(${describe(text)}, ${describe(enc)}) is not latin-1 bytes`);
      budget.step(text.length, () => "_codecs.encode");
      budget.charge(64 + text.length, "_codecs.encode bytes");
      const out = new Uint8Array(text.length);
      for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (c > 0xff) bad("_codecs.encode: character outside latin-1");
        out[i] = c;
      }
      return out;
    },
    "torch.Size": (a) => Object.freeze(ints(a[0] ?? [], "torch.Size")),
    "torch.device": (a) => (a.length > 1 ? `${name(a[0], "torch.device type")}:${name(a[1], "torch.device index")}` : name(a[0], "torch.device")),
    "torch.serialization._get_layout": (a) => name(a[0], "tensor layout"),
    "torch._utils._rebuild_tensor": (a) => rebuild("_rebuild_tensor", a[0], a[1], a[2], a[3]),
    "torch._utils._rebuild_tensor_v2": (a) => rebuild("_rebuild_tensor_v2", a[0], a[1], a[2], a[3]),
    "torch._utils._rebuild_tensor_v3": (a) => rebuild("_rebuild_tensor_v3", a[0], a[1], a[2], a[3], a[6]),
    "torch._utils._rebuild_parameter": (a) => tensorArg(a[0], "_rebuild_parameter"),
    "torch._utils._rebuild_parameter_with_state": (a) => tensorArg(a[0], "_rebuild_parameter_with_state"),
    "torch._tensor._rebuild_from_type_v2": (a) => {
      // (func, new_type, args, state): a tensor (or Parameter) with Python attributes; the attributes are dropped.
      const [func, , args] = a;
      if (!(func instanceof SafeCallable) || !Array.isArray(args)) return bad("_rebuild_from_type_v2 with a bad rebuild function");
      return func.fn(args);
    },
  };
  const globalValue = (rawModule: string, name: string): unknown => {
    const module = MODULE_RENAMES[rawModule] ?? rawModule;
    const full = `${module}.${name}`;
    if (!TORCH_WEIGHTS_ONLY_GLOBALS.has(full)) throw new UnsafePickleError(file, full);
    const fn = fns[full];
    if (fn) return new SafeCallable(full, fn);
    // Type markers: Parameter is built through NEWOBJ; both appear as `new_type` in _rebuild_from_type_v2.
    if (full === "torch.nn.parameter.Parameter" || full === "torch.Tensor") {
      return new SafeCallable(full, () => bad(`calling ${full} directly is not supported`));
    }
    if (full === "torch.storage.UntypedStorage") return new StorageClass(full, undefined);
    const storageName = /^torch\.(?:cuda\.|storage\.)?(\w+Storage)$/.exec(full)?.[1];
    if (storageName) {
      const dtype = LEGACY_STORAGE_DTYPES[storageName];
      if (dtype) return new StorageClass(full, dtype);
      return unsupported(full, "complex, quantized or TypedStorage storage");
    }
    const dtypeName = /^torch\.(\w+)$/.exec(full)?.[1];
    if (dtypeName && !/^[A-Z]/.test(dtypeName) && !dtypeName.startsWith("per_")) return new TorchDType(dtypeName, TORCH_TO_DTYPE[dtypeName]);
    return unsupported(full, "sparse, quantized, nested or subclass tensors");
  };

  return {
    storages,
    global: globalValue,
    call(func, args) {
      if (!(func instanceof SafeCallable)) return bad(`REDUCE on a ${describe(func)}, not an allowed function`);
      return func.fn(args);
    },
    newobj(cls, args) {
      if (cls instanceof SafeCallable && cls.fullName === "torch.nn.parameter.Parameter") return tensorArg(args[0], "Parameter");
      return bad(`NEWOBJ of ${cls instanceof SafeCallable ? cls.fullName : describe(cls)} is not supported`);
    },
    build(inst, _state) {
      // torch.save writes state for OrderedDicts (state_dict `_metadata`) and tensors with Python attributes:
      // neither changes tensor data, so the state is dropped.
      if (inst instanceof Map || inst instanceof PendingTensor) return inst;
      return bad(`BUILD on a ${describe(inst)}`);
    },
    persistentLoad(pid) {
      if (!Array.isArray(pid) || pid.length !== 5 || (pid[0] !== "storage" && !(pid[0] instanceof Uint8Array))) {
        return bad(`persistent id ${describe(pid)} is not ('storage', type, key, location, numel)`);
      }
      const [, cls, rawKey, location, numel] = pid as unknown[];
      if (!(cls instanceof StorageClass)) return bad(`persistent id names a ${describe(cls)}, not a storage class`);
      const key = rawKey instanceof Uint8Array ? new TextDecoder().decode(rawKey) : rawKey;
      if (typeof key !== "string" || !/^[\w.-]{1,256}$/.test(key)) return bad(`storage key ${typeof key === "string" ? JSON.stringify(key.slice(0, 64)) : `(a ${describe(key)})`} is not a plain name`);
      const loc = location instanceof Uint8Array ? new TextDecoder().decode(location) : location;
      if (typeof loc !== "string") return bad(`storage ${key}: location is a ${describe(loc)}`);
      const n = int(numel, `storage ${key} element count`);
      const known = storages.get(key);
      if (known) {
        if (known.cls.dtype !== cls.dtype) bad(`storage ${key} is named with two different types`);
        return known;
      }
      const ref = new StorageRef(key, cls, loc, n);
      storages.set(key, ref);
      return ref;
    },
  };
}
