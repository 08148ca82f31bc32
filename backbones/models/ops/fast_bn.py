"""BatchNorm inside the fast block, in torch ops: the batch statistics over the ranks of a SyncBN, the
running-statistics update, the snapshot op of the running statistics, and BN folded into fc1 (with the layer
scale folded into fc2). ``fast_block.fast_forward`` composes them; docs/gpu.md ("The fast block")."""
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


def bn_training(bn: _BatchNorm) -> bool:
    """Whether ``bn`` normalises with batch statistics (as ``_BatchNorm.forward`` decides)."""
    return bn.training or (bn.running_mean is None and bn.running_var is None)


def sync_group(bn: _BatchNorm, bn_training: bool):
    """The process group SyncBN would synchronise over here, or None (as ``nn.SyncBatchNorm.forward``)."""
    if not (isinstance(bn, nn.SyncBatchNorm) and bn_training and bn.training):
        return None
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return None
    group = bn.process_group or dist.group.WORLD
    return group if dist.get_world_size(group) > 1 else None


def sync_stats(mean: torch.Tensor, var: torch.Tensor, count: int, group):
    """Global (mean, biased var, count) over the ranks of ``group``: Chan's combination of every rank's
    (count, mean, M2), gathered by one differentiable all_reduce (each rank fills its own slot)."""
    import torch.distributed as dist
    from torch.distributed.nn.functional import all_reduce
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    local = torch.stack([torch.full_like(mean, float(count)), mean, var * count])
    slots = torch.stack([local if r == rank else torch.zeros_like(local) for r in range(world)])
    n, mu, m2 = all_reduce(slots, group=group).unbind(1)  # (world, C) each
    total = n.sum(0)
    mean_g = (n * mu).sum(0) / total
    var_g = (m2.sum(0) + (n * (mu - mean_g) ** 2).sum(0)) / total
    return mean_g, var_g, total


@torch.no_grad()
def update_running_stats(bn: _BatchNorm, mean: torch.Tensor, var: torch.Tensor, count) -> None:
    """``_BatchNorm.forward``'s bookkeeping and ``F.batch_norm``'s running-statistics update (unbiased var)."""
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.running_mean is not None:
        rm, rv = bn.running_mean, bn.running_var
        rm.copy_(mean.to(rm.dtype) * factor + rm * (1 - factor))
        rv.copy_((var * (count / (count - 1))).to(rv.dtype) * factor + rv * (1 - factor))


@torch.library.custom_op('inceptionnext::snapshot', mutates_args=())
def snapshot(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` (the BN running statistics, before ``update_running_stats`` changes them in place).

    An op of its own, not ``clone``: AOT autograd's partitioners may recompute cheap ops (clone, add, rsqrt)
    of a graph input in the backward instead of saving their result, and would then read the running
    statistics after this forward's in-place update (wrong gradients under torch.compile;
    tests/models/test_fast_block.py covers it). A custom op is never recomputed: its output is saved."""
    return t.clone()


@snapshot.register_fake
def _(t):
    return torch.empty_like(t)


def fold_torch(mean, var, center, rscale, bn, w1, b1, gamma, w2, b2, acc):
    """BN folded into fc1, the layer scale into fc2, in torch ops (CPU, and where the fold kernel is not taken)."""
    scale = torch.rsqrt(var.to(acc) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = (center - mean) * scale if center is not None else -mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    w1f = (w1 * (scale if rscale is None else scale / rscale)).to(w1.dtype)
    b1f = torch.addmv(b1, w1, shift.to(w1.dtype))
    if gamma is not None:
        w2, b2 = w2 * gamma.view(-1, 1), b2 * gamma
    return w1f, b1f, w2, b2


