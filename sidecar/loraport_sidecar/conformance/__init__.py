"""Reference side of loraport's conformance suite.

For one declarative case file (``conformance/cases/*.json``) this package builds the base model, the adapter
and the inputs, runs the reference implementations (microsoft/LoRA ``loralib`` and Hugging Face PEFT) and
writes every number loraport is compared with into one safetensors file plus a JSON manifest. It computes
reference numbers only; all comparisons (errors, pass/fail, reports) happen in the TypeScript runner, so the
error metrics are defined in exactly one place (``sdk/src/conformance/compare.ts``).

Run as ``python -m loraport_sidecar.conformance case --case FILE --out DIR`` (or ``verify``).
"""
