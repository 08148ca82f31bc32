"""The model: ``inceptionnext.py`` (MetaNeXt blocks, stages, the ``InceptionNeXt`` backbone and its arch table,
``MlpHead``, loading weights into them), ``weights.py`` (checkpoint files and layouts: reading, detecting,
converting official / timm / ConvNeXt layouts; it knows nothing of the model class) and ``ops/`` (device
kernels the model's modules dispatch to)."""
