"""Command line of the reference side: prints the manifest as one JSON line on stdout (last line)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(prog="python -m loraport_sidecar.conformance")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("case", help="compute the reference numbers of one case file")
    c.add_argument("--case", required=True, help="path of a conformance case JSON file")
    c.add_argument("--out", required=True, help="folder for the reference tensors, adapters and base model")
    c.add_argument("--reference-dir", default=None, help="folder of the published checkpoints")
    c.add_argument("--base", default=None, help="a local Hugging Face model folder with the real base weights")
    c.add_argument("--ts-adapter", default=None, help="PEFT adapter folder written by loraport's converter")
    c.add_argument("--ts-adapter-forward", default=None, help="the same, restricted to the forward model's layers")
    b = sub.add_parser("batch", help="several cases in one process (saves the import time per case)")
    b.add_argument("--jobs", required=True, help='JSON file [{"case": FILE, "out": DIR, "ts_adapter": DIR?, "ts_adapter_forward": DIR?, "onnx": [...]?}], or - for JSON lines on stdin')
    b.add_argument("--reference-dir", default=None)
    b.add_argument("--base", default=None)
    v = sub.add_parser("verify", help="reference numbers for a user's own base model and PEFT adapter")
    v.add_argument("--base", required=True)
    v.add_argument("--adapter", required=True)
    v.add_argument("--out", required=True)
    v.add_argument("--inputs", default=None, help='JSON file {"input_ids": [[...]], "attention_mask": [[...]]}')
    v.add_argument("--onnx", default="", help="comma-separated ONNX export modes to make in this process (adapter-inputs,merged)")
    args = p.parse_args(argv)

    from .errors import CaseError
    from .run_case import export_for_case, run_case, run_verify

    if args.cmd == "batch":
        # Jobs from a file, or (--jobs -) one JSON line per job on stdin until it closes, so the caller can add
        # jobs that depend on earlier results without paying the imports again.
        if args.jobs == "-":
            jobs = (json.loads(line) for line in iter(sys.stdin.readline, "") if line.strip())
        else:
            with open(args.jobs, encoding="utf-8") as f:
                jobs = iter(json.load(f))
        for i, job in enumerate(jobs):
            jid = job.get("id", i)
            try:
                manifest = run_case(job["case"], job["out"], reference_dir=args.reference_dir, base_dir=args.base,
                                    ts_adapter=job.get("ts_adapter"), ts_adapter_forward=job.get("ts_adapter_forward"),
                                    lora_alpha=job.get("lora_alpha"))
                if job.get("onnx"):
                    export_for_case(manifest, job["onnx"])
                print(json.dumps({"job": jid, "manifest": manifest}), flush=True)
            except CaseError as e:
                print(json.dumps({"job": jid, "error": {"type": type(e).__name__, "message": str(e), "file": e.file}}), flush=True)
            except Exception as e:  # noqa: BLE001 — one broken case must not hide the others' results
                print(json.dumps({"job": jid, "error": {"type": type(e).__name__, "message": str(e).splitlines()[0] if str(e) else "", "file": job["case"]}}), flush=True)
        return 0
    try:
        if args.cmd == "case":
            manifest = run_case(args.case, args.out, reference_dir=args.reference_dir, base_dir=args.base,
                                ts_adapter=args.ts_adapter, ts_adapter_forward=args.ts_adapter_forward)
        else:
            manifest = run_verify(args.base, args.adapter, args.out, inputs_file=args.inputs)
            if args.onnx:
                export_for_case(manifest, [m for m in args.onnx.split(",") if m])
    except CaseError as e:
        # A typed, one-line failure the TS runner turns into a LoraportError.
        print(json.dumps({"error": {"type": type(e).__name__, "message": str(e), "file": e.file}}))
        return 2
    print(json.dumps(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
