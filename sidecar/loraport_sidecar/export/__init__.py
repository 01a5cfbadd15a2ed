"""ONNX export of base models (adapter inputs or merged) for loraport's ONNX Runtime path."""
