"""Deploy mode (BN and layer scale folded) equals eval mode; the benchmark tool runs and reports."""
import csv
import subprocess
import sys

import pytest
import torch

from backbones import InceptionNeXt

from .conftest import REPO


def _randomise_norms(model):
    """Non-trivial BN statistics and layer scales, so that folding them is really tested."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
        if getattr(m, 'gamma', None) is not None:
            m.gamma.data.uniform_(0.5, 1.0)


@pytest.mark.parametrize('arch', ['atto', 'tiny', 'small', 'base', 'tiny_k3_par1_8'])
def test_deploy_equals_eval(arch):
    torch.manual_seed(0)
    model = InceptionNeXt(arch, out_norm=True).eval()
    _randomise_norms(model)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    for h, w in [(224, 224), (97, 131)] if arch in ('atto', 'tiny') else [(97, 131)]:
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            ref = model(x)
            deployed = InceptionNeXt(arch, out_norm=True).eval()
            deployed.load_state_dict(model.state_dict())
            deployed.switch_to_deploy()
            out = deployed(x)
        for a, b in zip(ref, out):
            assert (a - b).abs().max().item() <= 1e-5 and a.abs().mean() > 1e-2
    # only the 4 output norms remain; the blocks have no BN and no layer scale left
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in deployed.modules()) == 4 < n_bn
    assert all(b.gamma is None for s in deployed.stages for b in s.blocks)
    # its state dict loads into a model built in deploy form, with the same outputs
    rebuilt = InceptionNeXt(arch, out_norm=True, deploy=True)
    rebuilt.load_state_dict(deployed.state_dict())
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(rebuilt(x), out))
    with pytest.raises(RuntimeError, match='inference only'):
        rebuilt.train()


def test_benchmark_tool_reports(tmp_path):
    out = subprocess.run(
        [sys.executable, 'tools/benchmark.py', '--models', 'ours_atto', 'ours_atto_deploy', 'timm:inception_next_atto',
         '--batch', '2', '--train-batch', '2', '--size', '64', '--reps', '2', '--iters', '1', '--warmup', '1',
         '--gemm', '--ref', 'timm:inception_next_atto', '--out-csv', str(tmp_path / 't.csv'),
         '--out-md', str(tmp_path / 't.md'), '--out-png', str(tmp_path / 't.png')],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / 't.csv')))
    infer = {r['model']: r for r in rows if r['mode'] == 'infer'}
    train = {r['model'] for r in rows if r['mode'] == 'train'}
    assert set(infer) == {'ours_atto', 'ours_atto_deploy', 'timm:inception_next_atto'}
    assert train == {'ours_atto', 'timm:inception_next_atto'}  # the deploy form is inference-only
    for r in rows:
        assert float(r['best']) == max(float(r['channels_first']), float(r['channels_last'])) > 0
    assert float(infer['timm:inception_next_atto']['ratio']) == 1.0
    assert 0 < float(infer['ours_atto']['gemm_fraction']) < 5
    assert 'torch.mm fp32 rate' in out.stdout and (tmp_path / 't.png').stat().st_size > 10000
