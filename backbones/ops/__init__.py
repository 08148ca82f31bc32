"""Device-specific kernels for the InceptionNeXt model in ``backbones/inceptionnext.py``.

The model file holds only device-agnostic torch code. The modules here swap faster forms of its
blocks in, computing the same function with the same parameters and state dict:
- ``onednn``: CPU inference of the deploy form (``InceptionNeXt.switch_to_deploy(cpu_kernels=True)``).
"""
