"""Device-specific kernels for the model in ``backbones/models/inceptionnext.py``.

The model's modules choose them by flags that the ``install`` functions here set; the kernel modules never
import the model (they see its modules through their attributes). Each computes the same function with the
same parameters and state dict as the plain forward, which stays the reference and the fallback:
- ``onednn``: CPU inference of the deploy form (``InceptionNeXt.switch_to_deploy(cpu_kernels=True)``).
- ``fast_block``: training and inference of the (unfolded) blocks: BN folded into fc1 also in training
  (``fast_bn``); on CUDA the token mixer as one Triton kernel (``triton_dwconv`` with ``triton_dwconv_kernels``,
  imported only when that path is taken) after its first-use self-test (``fast_self_test``)
  (``InceptionNeXt(fast_path=...)``, ``set_fast_path``).
"""
