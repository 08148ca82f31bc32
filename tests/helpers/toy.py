"""A toy model through MMEngine's Runner: ``Toy`` (two linear layers), ``ToyData`` (64 samples, chosen
iterations nan), ``toy_runner`` (a ``RobustRunner`` with the non-finite-loss guard) and ``hooked_toy_runner``
(one with the given hooks and no guard), for the tests of the hooks, the runner, resuming, checkpoints and
configs that need a real training loop in a second."""
import itertools

import torch
import torch.nn as nn
from mmengine.model import BaseModel
from torch.utils.data import Dataset

from backbones.engine.runner import RobustRunner

_RUNS = itertools.count()


def experiment_name() -> str:
    """A name of its own for a test's Runner: MMEngine names a run's logger and visualizer after the second the
    run started, and a second run started within that second would get the first one's, their streams and
    folders included (a capsys stream closed since, a work dir moved since)."""
    return f'toy{next(_RUNS)}'


class Toy(BaseModel):
    def __init__(self, n_in=2):
        super().__init__()
        self.lin = nn.Linear(n_in, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        y = self.out(torch.relu(self.lin(torch.stack(inputs)))).squeeze(1)
        if mode == 'loss':
            return {'loss_mse': ((y - torch.stack(labels)) ** 2).mean(), 'acc': y.detach().mean()}
        return y


class ToyData(Dataset):
    """64 samples; those of the iterations in ``bad_iters`` (1-based, batch 4, no shuffle) are nan."""

    def __init__(self, bad_iters=()):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(64, 2, generator=g), torch.randn(64, generator=g)
        self.bad = {i for it in bad_iters for i in range((it - 1) * 4, it * 4)}

    def __len__(self):
        return 64

    def __getitem__(self, i):
        x = self.x[i] * (float('nan') if i in self.bad else 1.0)
        return dict(inputs=x, labels=self.y[i])


def toy_runner(work_dir, bad_iters=(), iters=8, guard=True, cfg=None, **guard_args):
    hooks = [dict(type='NonFiniteLossHook', **guard_args)] if guard else []
    return RobustRunner(
        model=Toy(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyData(bad_iters), sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=4, num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)), train_cfg=dict(by_epoch=False, max_iters=iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False, max_keep_ckpts=1),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=hooks, cfg=cfg, default_scope='mmengine', experiment_name=experiment_name())


def hooked_toy_runner(work_dir, iters=8, hooks=(), resume=False, interval=100):
    """A ``RobustRunner`` of ``Toy`` with ``hooks`` and no guard, a checkpoint every ``interval`` iterations
    (an experiment name of its own, as ``toy_runner``)."""
    return RobustRunner(
        model=Toy(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyData(), sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=4, num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=interval, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=list(hooks), resume=resume, default_scope='mmengine',
        experiment_name=experiment_name())
