"""``RobustRunner`` and ``prepare_config`` (backbones/engine/runner.py): every config gets the run guards,
``load_from`` is strict and partial loading is summarised, a work dir holding a run needs --resume or another
work dir (each with its control: what MMEngine's own Runner does); a data set smaller than one batch is
noticed. The train flow's steps done once: the work-dir claim (engine/work_dir.py), MMEngineFixesHook in every
RobustRunner (the one place the fixes are installed and checkpoints made plain data), the --compile optimizer
groups (``RobustRunner.build_optim_wrapper``)."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from backbones.engine import work_dir as wd
from backbones.engine.hooks import MMEngineFixesHook
from backbones.engine.plain_data import PLAIN_TAG
from backbones.engine.runner import RobustRunner, check_work_dir_is_new, prepare_config
from backbones.utils.errors import CheckpointError, UserInputError
from tests.helpers import REPO
from tests.helpers.logs import LogCapture
from tests.helpers.threads import single_torch_thread
from tests.helpers.toy import Toy, experiment_name, toy_runner

one_thread = pytest.fixture(autouse=True, scope='module')(single_torch_thread)


def test_every_config_gets_the_guards():
    """configs/_base_/default_runtime.py lists them (a plain Runner: mmseg's test.py); RobustRunner adds
    them to a config whose custom_hooks replaced the list."""
    for path in glob.glob(osp.join(REPO, 'configs', '*.py')):
        cfg = Config.fromfile(path)
        types = [h['type'] for h in cfg.custom_hooks]
        if 'NonFiniteLossHook' not in types:  # a leaf that replaced the list
            prepare_config(cfg)
            types = [h['type'] for h in cfg.custom_hooks]
        assert {'NonFiniteLossHook', 'SaveOnSignalHook'} <= set(types), path
    cfg = Config(dict(custom_hooks=[dict(type='RNGStateHook')], model=dict()))
    prepare_config(cfg)
    assert [h['type'] for h in cfg.custom_hooks] == ['RNGStateHook', 'NonFiniteLossHook', 'SaveOnSignalHook']


def test_load_from_is_strict_and_partial_loading_is_summarised(tmp_path, capsys):
    other = Toy(n_in=3)  # "another arch": the first layer differs
    torch.save({'state_dict': other.state_dict(), 'meta': {}}, tmp_path / 'other.pth')
    runner = toy_runner(tmp_path / 'w')
    runner._load_from = str(tmp_path / 'other.pth')
    with pytest.raises(CheckpointError, match=r'load_from=.*other.pth does not fit the model .*shape mismatches: '
                                              r'lin.weight: checkpoint \(4, 3\) vs model \(4, 2\).*'
                                              r'load_from_partial=True'):
        runner.load_or_resume()
    runner = toy_runner(tmp_path / 'p', cfg=dict(load_from_partial=True))
    runner._load_from = str(tmp_path / 'other.pth')
    with LogCapture() as log:
        runner.load_or_resume()
    summary = [w for w in log.warnings() if 'loaded partially' in w]
    assert len(summary) == 1 and "3 of the model's 4 tensors loaded; 0 not in the checkpoint" in summary[0]
    assert '1 of another shape (e.g. lin.weight) left as initialised' in summary[0]
    assert torch.equal(runner.model.out.weight, other.out.weight)
    # the control: MMEngine's own load_from (what a plain Runner does) takes it, one line per mismatch
    from mmengine.runner import Runner
    plain = toy_runner(tmp_path / 'c')
    plain._load_from = str(tmp_path / 'other.pth')
    Runner.load_or_resume(plain)
    assert 'size mismatch for lin.weight' in capsys.readouterr().out


def test_a_work_dir_holding_a_run_needs_resume_or_restart(tmp_path):
    work = tmp_path / 'w'
    assert check_work_dir_is_new(str(work), None, False) == ''  # new
    work.mkdir()
    (work / 'iter_4.pth').write_bytes(b'x')
    with pytest.raises(UserInputError, match=r'holds an earlier training run \(last checkpoint: .*iter_4.pth\); '
                                             r'add --resume to continue it, or --work-dir DIR'):
        check_work_dir_is_new(str(work), None, False)
    (work / 'last_checkpoint').write_text(str(work / 'iter_4.pth'))
    assert check_work_dir_is_new(str(work), 'auto', False) == ''
    assert check_work_dir_is_new(str(work), None, True) == str(work / 'iter_4.pth')
    with pytest.raises(UserInputError, match='holds an earlier training run'):  # any Runner of ours
        toy_runner(work).train()


def test_a_data_set_smaller_than_one_batch_is_noticed(tmp_path):
    """One sample at batch 8: the infinite sampler fills the batch with copies; the log says so."""
    from tests.helpers.logs import LogCapture
    from tests.helpers.toy import ToyData, toy_runner

    class One(ToyData):
        def __len__(self):
            return 1
    runner = toy_runner(tmp_path / 'w', iters=1, guard=False)
    runner._train_dataloader = dict(dataset=One(), sampler=dict(type='InfiniteSampler', shuffle=False),
                                    batch_size=8, num_workers=0)
    with LogCapture() as log:
        runner.train()
    assert ('train_dataloader: the data set holds 1 sample, fewer than one batch (8): each batch repeats '
            'samples; lower train_dataloader.batch_size or add data') in log.text


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
               custom_hooks=list(custom_hooks), cfg=cfg, default_scope='mmengine',
               experiment_name=experiment_name())


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
