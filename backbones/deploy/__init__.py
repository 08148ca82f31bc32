"""Deployment: ``onnx.py`` (ONNX export with dynamic sizes, the ONNX Runtime check, a torch-callable ORT model)."""
