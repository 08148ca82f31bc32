"""The train flow's steps done once: the work-dir claim (engine/work_dir.py), MMEngineFixesHook in every
RobustRunner (the one place the fixes are installed and checkpoints made plain data), the --compile optimizer
groups (RobustRunner.build_optim_wrapper)."""
import os.path as osp

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from backbones.engine import work_dir as wd
from backbones.engine.hooks import MMEngineFixesHook
from backbones.engine.plain_data import PLAIN_TAG
from backbones.engine.runner import RobustRunner
from backbones.utils.errors import UserInputError


class Tiny(BaseModel):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)
        self.norm = nn.LayerNorm(1)

    def forward(self, inputs, labels=None, mode='tensor'):
        y = self.norm(self.lin(torch.stack(inputs))).squeeze(1)
        return {'loss': ((y - torch.stack(labels)) ** 2).mean()} if mode == 'loss' else y


class Pairs(Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        return dict(inputs=torch.tensor([float(i), 1.0]), labels=torch.tensor(0.5))


def tiny_runner(cls, work_dir, custom_hooks=(), cfg=None, optim=None):
    return cls(model=Tiny(), work_dir=str(work_dir),
               train_dataloader=dict(dataset=Pairs(), sampler=dict(type='DefaultSampler', shuffle=False),
                                     batch_size=4, num_workers=0),
               optim_wrapper=optim or dict(optimizer=dict(type='SGD', lr=0.01)),
               train_cfg=dict(by_epoch=False, max_iters=2),
               default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
               custom_hooks=list(custom_hooks), cfg=cfg, default_scope='mmengine')


def test_the_work_dir_is_claimed_once_per_run(tmp_path):
    """The first claim locks and checks; while this process holds the lock, a second claim (RobustRunner.train
    after tools/train.py's) returns the first answer instead of checking again. A new run (the lock released, as
    at the end of a process) is checked again."""
    work = tmp_path / 'w'
    work.mkdir()
    (work / 'iter_4.pth').write_bytes(b'x')
    assert wd.claim_work_dir(str(work), None, True) == str(work / 'iter_4.pth')  # --restart over the run
    # the control: the check itself refuses these arguments ...
    with pytest.raises(UserInputError, match='holds an earlier training run'):
        wd.check_work_dir_is_new(str(work), None, False)
    # ... the same run's second claim does not check again
    assert wd.claim_work_dir(str(work), None, False) == str(work / 'iter_4.pth')
    wd._LOCKS.pop(osp.realpath(work)).close()  # the run ended
    with pytest.raises(UserInputError, match='holds an earlier training run'):
        wd.claim_work_dir(str(work), None, False)


def test_every_robust_runner_has_the_fixes_hook_once_and_writes_plain_data(tmp_path):
    """A RobustRunner whose config lists no MMEngineFixesHook registers one (and one only when it is listed); its
    checkpoints load with torch's weights_only=True. The control: a plain Runner without the hook writes
    MMEngine's pickled HistoryBuffer, which weights_only refuses."""
    runner = tiny_runner(RobustRunner, tmp_path / 'r')
    assert sum(isinstance(h, MMEngineFixesHook) for h in runner.hooks) == 1
    listed = tiny_runner(RobustRunner, tmp_path / 'l', custom_hooks=[dict(type='MMEngineFixesHook')])
    assert sum(isinstance(h, MMEngineFixesHook) for h in listed.hooks) == 1
    runner.train()
    ckpt = torch.load(tmp_path / 'r' / 'iter_2.pth', weights_only=True)
    scalars = ckpt['message_hub']['log_scalars']
    assert scalars and all(v.get(PLAIN_TAG) == 'mmengine.HistoryBuffer' for v in scalars.values())
    assert ckpt['meta']['train_batch'] == dict(world_size=1, batch_size=4, accumulative_counts=1)
    tiny_runner(Runner, tmp_path / 'p').train()
    with pytest.raises(Exception, match='HistoryBuffer'):
        torch.load(tmp_path / 'p' / 'iter_2.pth', weights_only=True)


def test_compile_gives_the_optimizer_plain_param_groups(tmp_path):
    """dynamo cannot trace an optimizer whose param groups are ConfigDicts (what paramwise options give):
    with cfg.compile the groups are plain dicts; without it they stay as MMEngine builds them (the control)."""
    def optim():  # as a config file gives it
        return ConfigDict(optimizer=dict(type='SGD', lr=0.01, weight_decay=1e-4),
                          paramwise_cfg=dict(norm_decay_mult=0.0))
    plain = tiny_runner(RobustRunner, tmp_path / 'a', optim=optim())
    groups = plain.build_optim_wrapper(plain.optim_wrapper).optimizer.param_groups
    assert any(isinstance(g, ConfigDict) for g in groups)
    compiled = tiny_runner(RobustRunner, tmp_path / 'b', optim=optim(), cfg=dict(compile=True))
    groups = compiled.build_optim_wrapper(compiled.optim_wrapper).optimizer.param_groups
    assert len(groups) == 4 and all(type(g) is dict for g in groups)  # one per parameter
