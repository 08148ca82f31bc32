"""Resuming (backbones/engine/resume.py, through RobustRunner and tools/train.py): from a moved or copied work
dir, the resume checks that run before the Runner writes into the work dir (another arch, nothing left to
train, another total batch), ``--auto-resume`` and the automatic resume of a requeued Slurm job; a checkpoint
records its total batch.
"""
import os
import os.path as osp
import shutil

import pytest
import torch

from backbones.engine import mmengine_fixes
from backbones.engine.resume import check_resume_fits, find_resume_checkpoint
from backbones.utils.config import load_config
from backbones.utils.errors import CheckpointError
from tests.helpers import REPO
from tests.helpers.logs import LogCapture
from tests.helpers.seg_data import SEG
from tests.helpers.threads import single_torch_thread
from tests.helpers.tool import tool
from tests.helpers.toy import hooked_toy_runner as toy_runner

one_thread = pytest.fixture(autouse=True, scope='module')(single_torch_thread)


@pytest.mark.parametrize('how', ['mv', 'cp'])
def test_resume_from_a_moved_or_copied_work_dir(tmp_path, how):
    """last_checkpoint holds the absolute path the run saved to. After ``mv`` that file is gone (resume
    failed: "checkpoint file not found"); after ``cp -r`` it is the OLD dir's (resume silently read it). The
    file of that name inside the work dir is taken instead, with a warning."""
    from mmengine.runner import find_latest_checkpoint
    old, new = tmp_path / 'old', tmp_path / 'new'
    toy_runner(old, iters=4, interval=2).train()
    mmengine_fixes._LOCKS.pop(osp.realpath(old)).close()  # the run ended (as its process would)
    (shutil.move if how == 'mv' else shutil.copytree)(str(old), str(new))
    # what MMEngine's own look-up gives: a missing file (mv) or the old dir's file (cp)
    assert find_latest_checkpoint(str(new)) == str(old / 'iter_4.pth')
    with LogCapture() as log:
        assert find_resume_checkpoint(str(new)) == str(new / 'iter_4.pth')
    assert log.warnings() == [f'{new}/last_checkpoint names {old}/iter_4.pth, outside the work dir (a '
                              f'moved or copied work dir?): resuming from {new}/iter_4.pth, the file of that '
                              'name in the work dir']
    # a resume without a file (mmseg's / mmdet's own --resume) continues from the work dir's file
    if how == 'cp':
        os.remove(old / 'iter_4.pth')  # so that reading the old dir's file would fail
    runner = toy_runner(new, iters=6, interval=2, resume=True)
    with LogCapture() as log:
        runner.train()
    assert runner.iter == 6 and 'resumed epoch: 0, iter: 4' in log.text
    assert osp.isfile(new / 'iter_6.pth')


def test_last_checkpoint_outside_the_work_dir_warns(tmp_path):
    work, elsewhere = tmp_path / 'w', tmp_path / 'elsewhere'
    work.mkdir()
    elsewhere.mkdir()
    (elsewhere / 'iter_9.pth').write_bytes(b'x')
    (work / 'last_checkpoint').write_text(str(elsewhere / 'iter_9.pth'))
    with LogCapture() as log:
        assert find_resume_checkpoint(str(work)) == str(elsewhere / 'iter_9.pth')
    assert log.warnings() == [f'{work}/last_checkpoint names {elsewhere}/iter_9.pth, outside the work dir '
                              f'{work}: resuming from it']
    os.remove(elsewhere / 'iter_9.pth')
    with pytest.raises(CheckpointError, match='which does not exist, and the work dir holds no iter_9.pth'):
        find_resume_checkpoint(str(work))
    os.remove(work / 'last_checkpoint')  # no last_checkpoint: the highest number, not the newest file
    for n in (10, 9):
        (work / f'iter_{n}.pth').write_bytes(b'x')
    assert find_resume_checkpoint(str(work)) == str(work / 'iter_10.pth')


@pytest.fixture(scope='module')
def seg_run(tmp_path_factory):
    """A tiny ADE-layout data set and a work dir holding a training checkpoint of the atto UperNet config at
    iteration 27, saved by 1 process x batch 8."""
    from mmengine.registry import MODELS, DefaultScope

    from backbones.datasets.synthetic import write_ade
    d = tmp_path_factory.mktemp('seg_run')
    root = str(d / 'ade')
    write_ade(root, num_train=4, num_val=2, size=(64, 64), seed=3)
    cfg = load_config(osp.join(REPO, SEG))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    meta = dict(iter=27, epoch=0, train_batch=dict(world_size=1, batch_size=8, accumulative_counts=1))
    return dict(root=root, state_dict=model.state_dict(), meta=meta, dir=d)


def work_dir_with(seg_run, tmp_path, **meta):
    work = tmp_path / 'w'
    work.mkdir()
    ckpt = dict(state_dict=seg_run['state_dict'], meta=dict(seg_run['meta'], **meta))
    torch.save(ckpt, work / 'iter_27.pth')
    (work / 'last_checkpoint').write_text(str(work / 'iter_27.pth'))
    return work


@pytest.mark.parametrize('case', ['arch', 'max_iters'])
def test_resume_is_checked_before_the_runner_writes(seg_run, tmp_path, case):
    """Another arch was refused only after the Runner had written its (wrong) config into the work dir;
    max_iters below the checkpoint's iteration exited 0 having done nothing. Both are now one line, and the
    work dir holds what it held."""
    work = work_dir_with(seg_run, tmp_path)
    opts = {'arch': ['model.backbone.arch=tiny'], 'max_iters': ['train_cfg.max_iters=20']}[case]
    out = tool('tools/train.py', SEG, '--work-dir', work, '--resume', '--cfg-options',
               f'train_dataloader.dataset.data_root={seg_run["root"]}',
               f'val_dataloader.dataset.data_root={seg_run["root"]}', *opts, expect=2)
    errors = [line for line in out.splitlines() if line.startswith('error:')]
    want = {'arch': f'error: {work}/iter_27.pth was saved by a different model (another arch or config?)',
            'max_iters': f'error: --resume: {work}/iter_27.pth is at iteration 27 and '
                         'train_cfg.max_iters=20: nothing is left to train; raise train_cfg.max_iters to '
                         'train on'}[case]
    assert len(errors) == 1 and errors[0].startswith(want), out[-2000:]
    assert sorted(os.listdir(work)) == ['iter_27.pth', 'last_checkpoint']


def test_auto_resume_and_a_requeued_job(seg_run, tmp_path):
    """``--auto-resume`` and a requeued Slurm job (SLURM_RESTART_COUNT=1, even with the --restart of its
    first start) resume the work dir's run; a checkpoint that ends the run leaves nothing to do (exit 0, one
    line). Before, the requeued job was refused ("holds an earlier training run ... add --resume")."""
    work = work_dir_with(seg_run, tmp_path)
    data = [f'train_dataloader.dataset.data_root={seg_run["root"]}',
            f'val_dataloader.dataset.data_root={seg_run["root"]}', 'train_cfg.max_iters=27']
    out = tool('tools/train.py', SEG, '--work-dir', work, '--auto-resume', '--cfg-options', *data)
    assert f'{work}/iter_27.pth ends the run (train_cfg\'s last iteration / epoch): nothing is left to ' \
        'train' in out
    out = tool('tools/train.py', SEG, '--work-dir', work, '--restart', '--cfg-options', *data,
               env={'SLURM_RESTART_COUNT': '1'})
    assert f'the Slurm job was requeued (SLURM_RESTART_COUNT=1): resuming the run in {work}' in out
    assert 'nothing is left to train' in out
    assert sorted(os.listdir(work)) == ['iter_27.pth', 'last_checkpoint']
    out = tool('tools/train.py', SEG, '--work-dir', work, '--auto-resume', '--restart', expect=2)
    assert 'error: --auto-resume continues the work dir\'s run, --restart trains from scratch: pass ' \
        'one' in out


def test_another_total_batch_warns_with_both_totals(seg_run):
    cfg = load_config(osp.join(REPO, SEG), {'train_dataloader.batch_size': 2})
    ckpt = dict(state_dict=seg_run['state_dict'], meta=seg_run['meta'])
    with LogCapture() as log:
        assert check_resume_fits(cfg, ckpt, 'x.pth')
    assert log.warnings() == ['resuming x.pth with another total batch: the checkpoint\'s run trained on '
                              '1 processes x 8 images = 8 images per step, this run on 1 processes x 2 '
                              'images = 2 (lr and schedule stay as configured: the resumed run is not the '
                              'one the checkpoint started)']
    with LogCapture() as log:  # the same total: no word
        assert check_resume_fits(load_config(osp.join(REPO, SEG)), ckpt, 'x.pth')
    assert log.warnings() == []


def test_a_checkpoint_records_its_total_batch(tmp_path):
    toy_runner(tmp_path / 'w', iters=2, interval=2).train()
    meta = torch.load(tmp_path / 'w' / 'iter_2.pth', weights_only=True)['meta']
    assert meta['train_batch'] == dict(world_size=1, batch_size=4, accumulative_counts=1)
