"""NonFiniteLossHook (backbones/engine/hooks/nonfinite_loss_hook.py): in process, on a toy model through
MMEngine's Runner (stop, skip, non-finite weights, the last finite checkpoint kept under max_keep_ckpts,
test-time refusal, its settings checked), and end to end through the real tools on a tiny UperNet-atto: a
diverging run stops with one line and keeps its last finite checkpoint, tools/test.py refuses a non-finite
checkpoint, and with two processes a divergence that one rank sees stops both (no hang). Each guard has its
control: the failure it prevents, shown without it.
"""
import os.path as osp
import re
import subprocess
import sys
import time

import pytest
import torch

from backbones.engine.hooks import NonFiniteLossHook, nonfinite_weights
from backbones.utils.errors import CheckpointError, TrainingDivergedError, UserInputError
from tests.helpers import REPO
from tests.helpers.logs import LogCapture
from tests.helpers.processes import free_port, run, subprocess_env
from tests.helpers.seg_runs import checkpoints, error_lines
from tests.helpers.threads import single_torch_thread
from tests.helpers.toy import toy_runner

one_thread = pytest.fixture(autouse=True, scope='module')(single_torch_thread)
PY = sys.executable


def test_a_non_finite_loss_stops_the_run_and_the_last_finite_checkpoint_survives(tmp_path):
    runner = toy_runner(tmp_path / 'w', bad_iters=range(4, 9))
    with LogCapture() as log, pytest.raises(TrainingDivergedError) as e:
        runner.train()
    msg = str(e.value)
    assert msg.startswith('training diverged at iteration 4: non-finite loss (loss=nan, loss_mse=nan; lr 0.01)')
    assert 'the last checkpoint, iter_3.pth, is finite' in msg and "nonfinite_loss.action='skip'" in msg
    assert msg in log.text  # in the log file too
    # max_keep_ckpts=1: the finite iter_3 is kept, nothing of iteration 4 was written or rotated
    assert checkpoints(tmp_path / 'w') == ({'iter_3.pth': True}, 'iter_3.pth')
    assert not nonfinite_weights(runner.model.state_dict())  # stopped before the step was applied

    # the control: without the guard the same run ends "well", its only checkpoint non-finite
    control = toy_runner(tmp_path / 'c', bad_iters=range(4, 9), guard=False)
    control.train()
    assert checkpoints(tmp_path / 'c') == ({'iter_8.pth': False}, 'iter_8.pth')
    # ... and a test of that model is refused
    with pytest.raises(CheckpointError, match=r'the model has non-finite weights \(4 tensors, e.g. lin.weight'):
        NonFiniteLossHook().before_test_epoch(control)


def test_skip_mode_drops_bad_steps_and_stops_after_max_skips(tmp_path):
    runner = toy_runner(tmp_path / 's', bad_iters=[3], cfg=dict(nonfinite_loss=dict(action='skip', max_skips=2)))
    with LogCapture() as log:
        runner.train()
    assert 'iteration 3: non-finite loss (loss=nan, loss_mse=nan; lr 0.01): step skipped' in log.text
    assert '1 training steps were skipped' in log.text
    assert checkpoints(tmp_path / 's') == ({'iter_8.pth': True}, 'iter_8.pth')
    # the skipped batch left the weights as they were: the same as a run whose iteration 3 had lr 0
    runner = toy_runner(tmp_path / 'm', bad_iters=range(3, 9), action='skip', max_skips=2)
    with pytest.raises(TrainingDivergedError, match=r'at iteration 5: .* after 2 skipped steps in a row'):
        runner.train()
    assert checkpoints(tmp_path / 'm') == ({'iter_4.pth': True}, 'iter_4.pth')


@pytest.mark.parametrize('bad', [dict(action='halt'), dict(max_skips=-1)])
def test_guard_settings_are_checked(tmp_path, bad):
    with pytest.raises(UserInputError, match='nonfinite_loss'):
        toy_runner(tmp_path, **bad).train()


def test_non_finite_weights_with_a_finite_loss_are_never_saved(tmp_path):
    """An overflow in the update (finite loss, non-finite weights after the step): stopped before the
    CheckpointHook rotates anything."""
    from mmengine.hooks import Hook

    class Overflow(Hook):
        priority = 'HIGHEST'

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter + 1 == 5:
                with torch.no_grad():
                    runner.model.out.weight[0, 0] = float('inf')

    runner = toy_runner(tmp_path / 'w')
    runner.register_hook(Overflow())
    with pytest.raises(TrainingDivergedError, match=r'weights are not finite after iteration 5 \(1 tensors, e.g. '
                                                    r'out.weight.*although the loss was finite'):
        runner.train()
    assert checkpoints(tmp_path / 'w') == ({'iter_4.pth': True}, 'iter_4.pth')


@pytest.mark.slow  # a training process
def test_a_diverging_run_stops_with_one_line_and_keeps_its_last_finite_checkpoint(configs, tmp_path):
    """lr 1e4: the loss (or, after an overflowing step, the weights) becomes non-finite within a few
    iterations; the run ends with exit 2 and one line, every checkpoint left is finite and last_checkpoint
    names one of them (max_keep_ckpts=1 rotated nothing away for a non-finite one). Before the guard, the same
    run exited 0 with nan checkpoints and scored mIoU 14.63 in tools/test.py."""
    cfg = configs('lr', iters=12)
    work = str(tmp_path / 'w')
    out = run([PY, 'tools/train.py', cfg, '--work-dir', work, '--cfg-options', 'optim_wrapper.optimizer.lr=1e4'],
              expect=2)
    errors = error_lines(out)
    assert len(errors) == 1 and 'Traceback' not in out, out[-3000:]
    assert re.match(r'error: training diverged(: the weights are not finite after iteration \d+| at iteration '
                    r'\d+: non-finite loss \(loss=(nan|inf), decode.loss_ce=)', errors[0]), errors[0]
    assert re.search(r'; lr (\S+\.\.)?1e\+04', errors[0]) and 'optim_wrapper.optimizer.lr' in errors[0], errors[0]
    files, last = checkpoints(work)
    assert files and all(files.values()) and last in files, (files, last)
    assert not re.search(r'Iter\(train\) \[12/12\]', out)

    # tools/test.py refuses a checkpoint with non-finite weights (the diverged model of the issue)
    nan = torch.load(osp.join(work, last), weights_only=False)
    nan['state_dict']['decode_head.conv_seg.weight'].fill_(float('nan'))
    torch.save(nan, tmp_path / 'nan.pth')
    out = run([PY, 'tools/test.py', cfg, str(tmp_path / 'nan.pth'), '--work-dir', str(tmp_path / 't')], expect=2)
    assert error_lines(out) == [f'error: {tmp_path}/nan.pth has non-finite weights (1 tensors, e.g. '
                                'decode_head.conv_seg.weight): it was saved by a diverged run; its scores would '
                                'be meaningless'], out[-2000:]


@pytest.mark.slow  # a training process
def test_two_processes_stop_together_when_one_rank_diverges(configs, tmp_path):
    """Rank 1's loss is nan at iteration 3, rank 0's finite: both stop before that step, each with its line
    (rank 0's says the loss was non-finite in another process), and nothing waits for a collective."""
    cfg = configs('ddp', iters=6)
    with open(cfg, 'a') as f:
        f.write("custom_hooks = [dict(type='NaNLossHook', at_iter=3, rank=1)]\n")
    work = str(tmp_path / 'w')
    t0 = time.time()
    r = subprocess.run(['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', work], cwd=REPO, capture_output=True,
                       text=True, timeout=600,
                       env=subprocess_env({'PORT': str(free_port())}))
    out = r.stdout + r.stderr
    assert r.returncode != 0 and time.time() - t0 < 300, out[-3000:]
    errors = error_lines(out)
    assert len(errors) == 2, out[-3000:]
    assert any(re.match(r'error: training diverged at iteration 3: non-finite loss \(loss=nan, ', e) for e in errors)
    assert any(e.startswith('error: training diverged at iteration 3: non-finite loss (in another process; here '
                            'loss=') for e in errors), errors
    assert checkpoints(work) == ({'iter_2.pth': True}, 'iter_2.pth')
