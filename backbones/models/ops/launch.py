"""Where the Triton kernels launch: the device guard shared by ``triton_dwconv`` and ``triton_fold``."""
import contextlib

import torch


def device_guard(device: torch.device):
    """The launches' device context: a CUDA device made current (Triton launches on the current device, so a
    map on cuda:1 needs it when cuda:0 is current); nothing elsewhere."""
    return torch.cuda.device(device) if device.type == 'cuda' else contextlib.nullcontext()
