"""Times Python safetensors on the benchmark file: load_file (every tensor) and save_file, best of N.
Only the call itself is inside perf_counter. Prints one JSON object."""
import json, os, sys, time

import torch  # noqa: F401  (imported before timing so import cost is not measured)
from safetensors import safe_open
from safetensors.torch import load_file, save_file

src, out_dir, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
read, read_touched, write, write_fsync = [], [], [], []
for _ in range(repeats):
    t0 = time.perf_counter()
    sd = load_file(src)
    read.append(time.perf_counter() - t0)
    del sd
# load_file maps the file lazily; touching one byte per 4 KiB page makes the data actually present in memory,
# which is what a copying reader delivers.
for _ in range(repeats):
    t0 = time.perf_counter()
    sd = load_file(src)
    for t in sd.values():
        if t.numel():
            t.view(-1).view(torch.uint8)[::4096].sum()
    read_touched.append(time.perf_counter() - t0)
with safe_open(src, "pt") as f:
    meta = f.metadata()
for i in range(repeats):
    dst = os.path.join(out_dir, f"py-{i}.safetensors")
    t0 = time.perf_counter()
    save_file(sd, dst, metadata=meta)
    write.append(time.perf_counter() - t0)
    os.remove(dst)
for i in range(repeats):
    # save_file plus the fsync an atomic writer needs, for a like-for-like comparison with loraport's writer.
    dst = os.path.join(out_dir, f"py-fsync-{i}.safetensors")
    t0 = time.perf_counter()
    save_file(sd, dst, metadata=meta)
    fd = os.open(dst, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    write_fsync.append(time.perf_counter() - t0)
    os.remove(dst)
print(json.dumps({"read": read, "read_touched": read_touched, "write": write, "write_fsync": write_fsync, "safetensors": __import__("safetensors").__version__, "torch": torch.__version__}))
