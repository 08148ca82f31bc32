"""Measuring models and runs: params / MACs (``flops``, ``flops_det``), throughput side by side with timm
(``benchmark``), training curves (``curves``). The tools of the same names are their command lines."""
