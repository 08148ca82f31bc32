"""Helpers the guard hooks share: a decision taken alike on every process, the weights' finiteness, and
what the log says about the last checkpoint."""
import os.path as osp

import torch
from mmengine.dist import all_reduce, get_dist_info
from mmengine.hooks import CheckpointHook


def world_max(value: int) -> int:
    """The largest of every process's ``value`` (one tiny all-reduce when distributed)."""
    if get_dist_info()[1] == 1:
        return int(value)
    t = torch.tensor([float(value)])
    all_reduce(t, op='max')
    return int(t.item())


def world_any(flag: bool, device=None) -> bool:
    """``flag`` or'ed over all processes (one tiny all-reduce when distributed), so every rank decides
    alike and none waits in a collective for a rank that stopped."""
    if get_dist_info()[1] == 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    all_reduce(t, op='max')
    return bool(t.item() > 0)


def nonfinite_weights(state_dict: dict) -> list:
    """The names of the floating-point tensors of ``state_dict`` holding an inf or a nan (one sync when all
    are finite)."""
    floats = [(k, v) for k, v in state_dict.items()
              if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel()]
    if not floats:
        return []
    device = floats[0][1].device
    ok = torch.stack([torch.isfinite(v).all().to(device) for _, v in floats])
    if bool(ok.all()):
        return []
    return [k for (k, _), good in zip(floats, ok.tolist()) if not good]


def last_checkpoint(runner) -> str:
    """What a stop message says about the work dir's last checkpoint (``last_checkpoint``)."""
    path = osp.join(runner.work_dir, 'last_checkpoint')
    if osp.isfile(path):
        with open(path) as f:
            return f'the last checkpoint, {osp.basename(f.read().strip())}, is finite'
    return 'no checkpoint was saved before'


def checkpoint_hook(runner):
    """The runner's ``CheckpointHook``, or None."""
    return next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)
