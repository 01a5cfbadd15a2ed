"""Writes torch.save checkpoints for the format tests into argv[1] and prints, per file, what
torch.load(weights_only=True) returns, flattened as loraport names it (dtype, shape, sha256 of the bytes)."""
import hashlib, io, json, os, pickle, sys, zipfile
from collections import OrderedDict

import torch

out = sys.argv[1]
g = torch.Generator().manual_seed(0)
DTYPES = dict(F64=torch.float64, F32=torch.float32, F16=torch.float16, BF16=torch.bfloat16, I64=torch.int64, I32=torch.int32,
              I16=torch.int16, I8=torch.int8, U64=torch.uint64, U32=torch.uint32, U16=torch.uint16, U8=torch.uint8,
              BOOL=torch.bool, F8_E4M3=torch.float8_e4m3fn, F8_E5M2=torch.float8_e5m2)
NAME = {v: k for k, v in DTYPES.items()}


def rnd(*shape):
    return torch.randn(*shape, generator=g)


def rewrite_zip(src, dst, patch=lambda name, data: data, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compress) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, patch(info.filename, zin.read(info.filename)))


files = {}
files["nested.pt"] = {"model": {"enc": {"w": rnd(3, 4)}, "dec": OrderedDict(b=rnd(5), l=[rnd(2), rnd(1, 1)])}, "step": 3, "name": "x"}
files["dtypes.pt"] = OrderedDict((k, (rnd(4, 3) > 0) if dt == torch.bool else (rnd(4, 3) * 40).to(dt)) for k, dt in DTYPES.items())
base = rnd(6, 8)
files["views.pt"] = {"base": base, "same": base, "row": base[2], "col": base[:, 3], "t": base.t(), "block": base[1:4, 2:6],
                     "step": base[::2, 1::3], "expand": base[0:1].expand(3, 8), "scalar": base[5, 7], "empty": base[:0],
                     "half_t": rnd(5, 7).half().t(), "i64_view": torch.arange(40).reshape(5, 8)[1:, ::3]}
files["wrapped.pt"] = {"epoch": 2, "model_state_dict": OrderedDict(w=rnd(3), b=rnd(2)), "optimizer_state_dict": {"state": {}, "lr": 0.1}}
files["wrapped2.pt"] = {"state_dict": {"w": rnd(2, 2)}, "meta": {"v": 1}}
files["param.pt"] = {"p": torch.nn.Parameter(rnd(3, 2)), "q": torch.nn.Parameter(rnd(2).bfloat16(), requires_grad=False)}
attr = rnd(4)
attr.note = "hello"  # a tensor with a Python attribute: saved through _rebuild_from_type_v2
files["attr.pt"] = {"t": attr}
# A module's state_dict(): OrderedDict with _metadata state (pickle BUILD), tied embedding / output weights,
# a buffer, and a LayerNorm.
emb = torch.nn.Embedding(32, 16)
head = torch.nn.Linear(16, 32, bias=False)
head.weight = emb.weight
model = torch.nn.ModuleDict({"wte": emb, "lm_head": head, "ln": torch.nn.LayerNorm(16), "bn": torch.nn.BatchNorm1d(4)})
files["module_state_dict.bin"] = model.state_dict()

for name, obj in files.items():
    torch.save(obj, os.path.join(out, name))

# Storages tagged cuda:0 (as the published checkpoints are): patch the location string in data.pkl.
def to_cuda(name, data):
    return data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0") if name.endswith("data.pkl") else data
rewrite_zip(os.path.join(out, "nested.pt"), os.path.join(out, "cuda.pt"), to_cuda)
rewrite_zip(os.path.join(out, "views.pt"), os.path.join(out, "deflated.pt"), compress=zipfile.ZIP_DEFLATED)
torch.save({"w": rnd(2)}, os.path.join(out, "legacy.pt"), _use_new_zipfile_serialization=False)


def flat(v, prefix=""):
    if isinstance(v, torch.Tensor):
        yield prefix, v
        return
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, (list, tuple)) else ()
    for k, x in items:
        if isinstance(k, (str, int)):
            yield from flat(x, f"{prefix}.{k}" if prefix else str(k))


def unwrap(v):
    for w in ("model_state_dict", "state_dict"):
        if isinstance(v, dict) and isinstance(v.get(w), dict):
            return v[w]
    return v


def describe(path):
    sd = torch.load(path, weights_only=True, map_location="cpu")
    res = {}
    for k, t in flat(unwrap(sd)):
        c = t.detach().contiguous()
        raw = bytes(c.untyped_storage())[c.storage_offset() * c.element_size():][: c.numel() * c.element_size()]
        res[k] = dict(dtype=NAME[t.dtype], shape=list(t.shape), sha=hashlib.sha256(raw).hexdigest(), storage=t.untyped_storage().data_ptr())
    # Storage identity as groups of names (data_ptr values mean nothing across processes).
    groups = {}
    for k, d in res.items():
        groups.setdefault(d.pop("storage"), []).append(k)
    return dict(tensors=res, shared=sorted(sorted(v) for v in groups.values() if len(v) > 1))


paths = [os.path.join(out, n) for n in list(files) + ["cuda.pt", "deflated.pt"]] + sys.argv[2:]
print(json.dumps({p: describe(p) for p in paths}))
