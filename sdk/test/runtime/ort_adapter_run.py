"""Runs an adapter-inputs export made with LoRA input defaults (``lora_defaults``) with Python onnxruntime and a
loraport `.onnx_adapter` made active through `RunOptions.add_active_adapter` (the adapter's inputs are NOT fed), as a
Python / ORT GenAI user would, through the public ``InferenceSession.run``.

argv: <export dir> <adapter file, or - for none> <json ids> [<json attention mask>]. Prints one JSON document: the logits, and the
parameters `onnxruntime.AdapterFormat.read_adapter` sees (name → dims).
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

export, adapter_file = Path(sys.argv[1]), sys.argv[2]
ids = np.array(json.loads(sys.argv[3]), dtype=np.int64)
mask = np.array(json.loads(sys.argv[4]), dtype=np.int64) if len(sys.argv) > 4 else np.ones_like(ids)
manifest = json.loads((export / "loraport-onnx.json").read_text())
batch, seq = ids.shape

feeds = {"input_ids": ids, manifest["lora_index_input"]: np.zeros(batch, dtype=np.int64)}
gen = manifest.get("generation")
if gen:
    # The single prefill+decode graph: one masked dummy past slot per layer (see the exporter's docstring).
    kv = gen["kv_cache"]
    for name in kv["past_inputs"]:
        feeds[name] = np.zeros((batch, kv["kv_heads"], 1, kv["head_dim"]), dtype=np.float32)
    feeds["attention_mask"] = np.concatenate([np.zeros((batch, 1), dtype=np.int64), mask], axis=1)
    feeds[kv["position_ids_input"]] = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
else:
    feeds["attention_mask"] = mask

so = ort.SessionOptions()
so.log_severity_level = 3  # ORT warns once per input that has a default ("will not be treated as constant"): intended
session = ort.InferenceSession(str(export / manifest["model_file"]), so, providers=["CPUExecutionProvider"])
if adapter_file == "-":
    logits = session.run(["logits"], feeds)[0]
else:
    adapter = ort.LoraAdapter()
    adapter.Load(str(Path(adapter_file).resolve()))  # ORT wants an absolute path
    options = ort.RunOptions()
    options.add_active_adapter(adapter)
    logits = session.run(["logits"], feeds, options)[0]
params = ort.AdapterFormat.read_adapter(adapter_file).get_parameters() if adapter_file != "-" else {}
print(json.dumps({"logits": logits.reshape(-1).tolist(), "shape": list(logits.shape),
                  "parameters": {k: list(v.shape()) for k, v in params.items()}}))
