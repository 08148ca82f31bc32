"""Deployment: ONNX export with dynamic sizes (``export.py``, ``shims.py``), the ONNX Runtime check and a
torch-callable ORT model (``runtime.py``); ``onnx.py`` re-exports them."""
