"""Device-specific kernels for the InceptionNeXt model in ``backbones/inceptionnext.py``.

The model file holds only device-agnostic torch code. The modules here swap faster forms of its
blocks in, computing the same function with the same parameters and state dict:
- ``onednn``: CPU inference of the deploy form (``InceptionNeXt.switch_to_deploy(cpu_kernels=True)``).
- ``fast_block``: training and inference of the (unfolded) blocks: BN folded into fc1 also in training; on CUDA
  the token mixer as one Triton kernel (``triton_dwconv``) (``InceptionNeXt(fast_path=...)``, ``set_fast_path``).
"""
