"""The data-pipeline benchmark (tools/analysis_tools/benchmark_data.py): its table, on tiny generated data,
and that each row comes from the pipeline it names."""
import random
import re

import numpy as np
import pytest
import torch

from backbones.analysis import data_bench
from backbones.utils.config import load_config
from tests.helpers import REPO
from tests.helpers.tool import tool

ADE = f'{REPO}/configs/upernet_inceptionnext-atto_1xb8-160k_synthetic-ade-128x128.py'
COCO = f'{REPO}/configs/mask-rcnn_inceptionnext-atto_fpn_500iter_synthetic-coco.py'
CLS = f'{REPO}/configs/inceptionnext-atto_4xb320-600e_in1k.py'


@pytest.fixture(autouse=True)
def tiny_images(monkeypatch):
    monkeypatch.setattr(data_bench, 'GENERATED_SIZE', {'seg': (96, 64), 'det': (96, 64), 'cls': 64})


def _seeded(fn):
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    return fn(0)


def _steps(getitem):
    return [type(t).__name__ for t in getitem.__self__.pipeline.transforms]


@pytest.mark.parametrize('config', [ADE, COCO])
def test_dense_rows_are_the_config_pipeline_and_the_stacks_own(config, tmp_path):
    cfg = load_config(config)
    task = data_bench.task_of(cfg)
    extra = data_bench.generate(task, str(tmp_path), 2, cfg)
    fns, n = data_bench.build_pipelines(cfg, 'train_dataloader', str(tmp_path), extra)
    assert n == 2
    ours, ref = _steps(fns['ours']), _steps(fns['reference'])
    assert ours[0] == 'LoadImageFromFileChecked' and ref[0] == 'LoadImageFromFile'
    assert ('CheckSegMap' in ours) == (task == 'seg') and 'CheckSegMap' not in ref
    # ADE: the checked annotation loader in ours, mmseg's own in the reference
    assert ('LoadAnnotationsChecked' in ours) == (task == 'seg') and 'LoadAnnotationsChecked' not in ref
    ref_loaders = {type(t).__module__ for t in fns['reference'].__self__.pipeline.transforms
                   if type(t).__name__ == 'LoadAnnotations'}
    assert ref_loaders == {f'{"mmseg" if task == "seg" else "mmdet"}.datasets.transforms.loading'}
    assert [s.replace('Checked', '') for s in ours[1:] if s != 'CheckSegMap'] == ref[1:]
    a, b = (_seeded(fns[k]) for k in ('ours', 'reference'))  # the same random augmentation
    assert a['inputs'].shape == b['inputs'].shape and a['inputs'].dtype == torch.uint8
    assert data_bench.sample_bytes(a) == data_bench.sample_bytes(b) > a['inputs'].numel()


def test_classification_reference_is_timms_float_transform(tmp_path):
    cfg = load_config(CLS)
    extra = data_bench.generate('cls', str(tmp_path), 4)
    fns, n = data_bench.build_pipelines(cfg, 'train_dataloader', str(tmp_path), extra)
    ours, ref = fns['ours'](0), fns['reference'](0)
    assert ours['inputs'].dtype == torch.uint8 and ref.dtype == torch.float32
    assert ours['inputs'].shape == ref.shape == (3, 224, 224)
    assert data_bench.sample_bytes(ref) == 4 * data_bench.sample_bytes(ours)


def test_tool_prints_the_table(tmp_path):
    out = tool('tools/analysis_tools/benchmark_data.py', ADE, '--generate', '--images', '2', '--reps', '2',
               '--target', '500', '--out-md', tmp_path / 't.md')
    table = [line for line in out.splitlines() if line.startswith('|')]
    assert table[0].startswith('| task | split | pipeline | ms/img | img/s per core | KiB per sample | '
                               'speed vs reference | workers per GPU for 500 img/s |')
    rows = [[c.strip() for c in line.strip('|').split('|')] for line in table[2:]]
    expect = [['seg', split, p] for split in ('train', 'val') for p in ('ours', 'reference')]
    assert [r[:3] for r in rows] == expect
    for r in rows:
        ms, per_core = float(r[3]), float(r[4])
        assert ms > 0 and abs(per_core - 1e3 / ms) <= 0.06 * per_core
        assert re.fullmatch(r'\d+\.\d\dx', r[6]) and int(r[7]) >= 1
    assert all(r[6] == '1.00x' for r in rows if r[2] == 'reference')
    assert (tmp_path / 't.md').read_text().splitlines() == table
    err = tool('tools/analysis_tools/benchmark_data.py', tmp_path / 'none.py', '--generate', expect=2)
    assert err.stderr.strip() == f'error: config file not found: {tmp_path / "none.py"}'
