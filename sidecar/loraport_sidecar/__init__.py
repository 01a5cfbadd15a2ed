"""loraport's Python sidecar: runs PyTorch, PEFT and loralib on behalf of the TypeScript SDK."""

__version__ = "0.1.0"
