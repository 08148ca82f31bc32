"""``RobustRunner`` and ``prepare_config`` (backbones/engine/runner.py): every config gets the run guards,
``load_from`` is strict and partial loading is summarised, a work dir holding a run needs --resume or another
work dir (each with its control: what MMEngine's own Runner does); a data set smaller than one batch is
noticed."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from backbones.engine.runner import check_work_dir_is_new, prepare_config
from backbones.utils.errors import CheckpointError, UserInputError
from tests.helpers import REPO
from tests.helpers.logs import LogCapture
from tests.helpers.threads import single_torch_thread
from tests.helpers.toy import Toy, toy_runner

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
