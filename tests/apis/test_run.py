"""What ``backbones.apis.run`` does around the Runner: the work dir's ``~`` expanded, running out of memory
named with the batch size and what to lower (the wording, and a real process under an address-space limit),
a BatchNorm given one value per channel turned into one line."""
import argparse
import os
import os.path as osp
import re

import pytest
from mmengine.config import Config

from backbones.utils.errors import UserInputError
from tests.helpers import REPO
from tests.helpers.seg_data import SEG, _seg_opts


def test_work_dir_tilde_is_expanded():
    from backbones.apis.run import run_config
    args = argparse.Namespace(config=SEG, cfg_options=None, work_dir='~/w', launcher='none', local_rank=0)
    assert run_config(args).work_dir == osp.expanduser('~/w')


def test_out_of_memory_is_named_with_the_batch_size():
    from backbones.apis.run import out_of_memory, raise_if_out_of_memory
    cfg = Config(dict(train_dataloader=dict(batch_size=32, num_workers=4)))
    for e in (MemoryError(), RuntimeError('could not create a primitive'),
              RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory"),
              OSError('libgomp.so.1: failed to map segment from shared object')):
        assert out_of_memory(e), e
        with pytest.raises(UserInputError, match=r'out of host memory .* at train_dataloader.batch_size=32 per '
                                                 r'process: lower train_dataloader.batch_size'):
            raise_if_out_of_memory(e, cfg, 'train_dataloader')
    assert not out_of_memory(RuntimeError('mat1 and mat2 shapes cannot be multiplied'))
    raise_if_out_of_memory(ValueError('x'), cfg, 'train_dataloader')  # anything else: not re-worded
    torch_text = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                  "tried to allocate 16777216 bytes. Error code 12 (Cannot allocate memory)")
    assert out_of_memory(RuntimeError(torch_text)) == 'the CPU allocator could not get 16.0 MiB more'
    long = out_of_memory(RuntimeError('out of memory ' + 'word ' * 60))
    assert long.endswith(' ...') and len(long) <= 164 and ' wor ...' not in long  # cut between words


# A real process under an address-space limit (what `ulimit -v` sets): the limit is set once the stack is
# imported, at its size then plus HEADROOM, which holds the model, its optimizer and the runner but not the
# activations of a batch of 64 (the FPN's concatenated map alone is 64 x 2048 x 32 x 32 floats, 0.5 GiB).
OOM_RUN = r"""
import resource, runpy, sys
import torch, mmseg.models, backbones, backbones.apis.run
vm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmSize:')) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + int(sys.argv[1]), resource.RLIM_INFINITY))
sys.argv = ['tools/train.py', *sys.argv[2:]]
sys.path.insert(0, 'tools')
runpy.run_path('tools/train.py', run_name='__main__')
"""


HEADROOM = 1536 << 20


@pytest.mark.slow
def test_running_out_of_memory_is_one_line_naming_the_batch(seg_cfg, tmp_path):
    """tools/train.py out of host memory for real: exit 2, one `error:` line with the batch size and what to
    lower, no traceback. The control: the same limit with a batch of 2 trains."""
    import subprocess
    import sys
    root, _ = seg_cfg
    opts = [f'{k}={v}' for k, v in _seg_opts(root).items()] + [
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
        'train_cfg.max_iters=1', 'train_cfg.val_interval=100', 'default_hooks.checkpoint.interval=100',
        'model.backbone.init_cfg=None']

    def train(batch, work):
        r = subprocess.run([sys.executable, '-c', OOM_RUN, str(HEADROOM), SEG, '--work-dir', str(work),
                            '--cfg-options', f'train_dataloader.batch_size={batch}', *opts],
                           cwd=REPO, capture_output=True, text=True, timeout=600,
                           env={**os.environ, 'OMP_NUM_THREADS': '1', 'INCEPTIONNEXT_MALLOC': 'default'})
        return r.returncode, r.stderr.strip().splitlines()

    code, lines = train(64, tmp_path / 'big')
    assert code == 2, lines[-20:]
    assert lines[-1].startswith('error: out of host memory (') and 'Traceback' not in '\n'.join(lines), lines[-20:]
    assert 'at train_dataloader.batch_size=64 per process: lower train_dataloader.batch_size' in lines[-1]
    assert re.search(r'out of host memory \((the CPU allocator could not get [0-9.]+ MiB more|MemoryError|could '
                     r'not create a primitive)\)', lines[-1]), lines[-1]  # what failed, said in a few words
    code, lines = train(2, tmp_path / 'small')
    assert code == 0, lines[-20:]


def test_batchnorm_with_one_value_per_channel_is_one_line(tmp_path, monkeypatch):
    """Batch 1 per process meets UperNet's pooling branch (a 1x1 map) in a training BatchNorm: torch's
    ValueError becomes one line saying why and what to do, through tools/train.py's error path."""
    import torch

    from tests.helpers.tool import TOOLS, run_in_process
    bn = torch.nn.BatchNorm2d(4).train()
    with pytest.raises(ValueError) as real:
        bn(torch.zeros(1, 4, 1, 1))  # what the pooling head does at batch 1

    class Runner:
        def train(self):
            raise real.value

    import backbones.apis.run as run
    monkeypatch.syspath_prepend(TOOLS)  # tools import tools/launch/malloc_env.py
    monkeypatch.setattr(run, 'preflight', lambda cfg, splits: None)  # no data set needed; apis.run.run_train
    monkeypatch.setattr(run, 'build_runner', lambda cfg: Runner())  # calls these two by their module names
    code, err = run_in_process('train.py', [SEG, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                                            'train_dataloader.batch_size=1'])
    assert code == 2, err
    assert err.strip() == (
        'error: train_dataloader.batch_size=1 per process: a BatchNorm layer in training got one value per '
        'channel (input torch.Size([1, 4, 1, 1])), one image meeting a 1x1 map (the pooling branch of the '
        'decode head); batch statistics need at least 2 values: use train_dataloader.batch_size >= 2 per '
        'process (SyncBN, which pools the batch over GPU processes, falls back to BN on CPU)')
