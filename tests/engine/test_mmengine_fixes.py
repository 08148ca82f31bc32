"""The MMEngine fixes (backbones/engine/mmengine_fixes.py): importing backbones patches nothing, checkpoint
writes are atomic once the fixes are installed, SyncBN falls back to BN on CPU."""
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.fileio import get_file_backend

from backbones.engine.mmengine_fixes import AtomicLocalBackend, fallback_syncbn_on_cpu, install_mmengine_fixes


@pytest.mark.slow
def test_importing_backbones_patches_nothing():
    """A fresh process that imports backbones (as every config does) still has MMEngine's own loader and
    file backend; install_mmengine_fixes() (what building a RobustRunner calls) swaps both in."""
    import subprocess
    import sys
    code = ('import backbones; from mmengine.fileio import get_file_backend; '
            'from mmengine.runner.checkpoint import CheckpointLoader as L; '
            'print(type(get_file_backend("x.pth")).__name__, L._schemes[""].__module__); '
            'from backbones.engine.mmengine_fixes import install_mmengine_fixes as f; f(); '
            'print(type(get_file_backend("x.pth")).__name__, L._schemes[""].__module__)')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split('\n')[:2] == ['LocalBackend mmengine.runner.checkpoint',
                                        'AtomicLocalBackend backbones.engine.mmengine_fixes']


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    install_mmengine_fixes()
    backend = get_file_backend(str(tmp_path / 'x.pth'))
    assert isinstance(backend, AtomicLocalBackend)  # what MMEngine's save_checkpoint now writes through
    target = tmp_path / 'iter_4.pth'
    backend.put(b'good checkpoint', str(target))

    def crash(fd):
        raise KeyboardInterrupt('killed mid-write')

    monkeypatch.setattr(os, 'fsync', crash)
    with pytest.raises(KeyboardInterrupt):
        backend.put(b'half', str(target))
    assert target.read_bytes() == b'good checkpoint'
    assert os.listdir(tmp_path) == ['iter_4.pth']  # the partial temp file is gone too



def test_syncbn_falls_back_to_bn_on_cpu():
    if torch.cuda.is_available():
        pytest.skip('only without a GPU')
    cfg = Config(dict(model=dict(backbone=dict(norm_cfg=dict(type='SyncBN')),
                                 heads=[dict(norm_cfg=dict(type='SyncBN', requires_grad=True))])))
    assert fallback_syncbn_on_cpu(cfg) == 2
    assert cfg.model.backbone.norm_cfg.type == 'BN' and cfg.model.heads[0].norm_cfg.type == 'BN'
