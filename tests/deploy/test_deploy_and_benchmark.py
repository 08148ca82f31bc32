"""Deploy mode (BN and layer scale folded) equals eval mode; the benchmark tool runs and reports."""
import copy
import csv
import os
import subprocess
import sys

import pytest
import torch

from backbones import InceptionNeXt, MetaNeXtBlock
from tests.helpers import REPO
from tests.helpers.models import randomise_norms
from tests.helpers.tool import tool

# float32 comparisons of two orders of the same operations: bounds relative to the map's largest value,
# 1e-5 (~170 float32 ulps; measured 2e-7..1.4e-6 with oneDNN's kernels and with torch's own, which stand in
# for another CPU). The folding's math is checked in float64, to 1e-12 (measured 1e-15).
FP32_REL = 1e-5


def close32(a, b) -> bool:
    return (a - b).abs().max().item() <= FP32_REL * b.abs().max().item()


@pytest.mark.parametrize('arch', ['atto', 'tiny', 'small', 'base', 'metanext_bn_tiny_k3_par1_8'])
def test_deploy_equals_eval(arch):
    torch.manual_seed(0)
    model = InceptionNeXt(arch, out_norm=True).eval()
    randomise_norms(model)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    for h, w in [(224, 224), (97, 131)] if arch in ('atto', 'tiny') else [(97, 131)]:
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            ref = model(x)
            deployed = InceptionNeXt(arch, out_norm=True).eval()
            deployed.load_state_dict(model.state_dict())
            deployed.switch_to_deploy()
            out = deployed(x)
        for a, b in zip(out, ref):
            assert close32(a, b) and b.abs().mean() > 1e-2
    with torch.no_grad():  # the folding itself, in float64 (folded from float64 weights)
        model64 = copy.deepcopy(model).double()
        ref64 = model64(x.double())
        out64 = copy.deepcopy(model64).switch_to_deploy()(x.double())
    for a, b in zip(out64, ref64):
        assert a.dtype == torch.float64 and (a - b).abs().max().item() <= 1e-12 * b.abs().max().item()
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


def test_deploy_cpu_kernels_are_exact_and_fall_back():
    """The oneDNN path (fused post-ops, channels-last, cache-sized sub-batches) equals eval mode; with
    autograd on, under tracing, or with it switched off, the plain folded ops run, with the same values."""
    torch.manual_seed(0)
    model = InceptionNeXt('atto').eval()
    randomise_norms(model)
    x = torch.randn(5, 3, 71, 97)
    with torch.no_grad():
        ref = model(x)
    fast = copy.deepcopy(model).switch_to_deploy(chunk_bytes=200_000)  # sub-batches of 1-2 images here
    plain = copy.deepcopy(model).switch_to_deploy(cpu_kernels=False)
    assert fast.cpu_kernels and fast.stages[0].chunk_bytes == 200_000
    # the kernels are flags on the model's own modules (no class swap): set on the fast copy, class defaults on the
    # plain one
    assert fast.stages[0].blocks[0].post_op == ('gelu', [], 'none') and plain.stages[0].blocks[0].post_op is None
    assert 'post_op' not in vars(plain.stages[0].blocks[0]) and not plain.stages[0].chunk_bytes
    assert type(plain.stages[0].blocks[0]) is MetaNeXtBlock and type(fast.stages[0].blocks[0]) is MetaNeXtBlock
    with torch.no_grad():
        out_fast, out_plain = fast(x), plain(x)
    out_grad = fast(x)  # autograd on: plain ops
    traced = torch.jit.trace(fast, x[:1], check_trace=False)  # FLOP counters trace: plain ops
    for i, (a, b, c, d) in enumerate(zip(ref, out_fast, out_plain, out_grad)):
        assert close32(b, a) and close32(c, a) and close32(d, a)
        assert a.abs().mean() > 1e-2
        assert b.is_contiguous(memory_format=torch.channels_last) and not c.is_contiguous(
            memory_format=torch.channels_last)
    assert 'mkldnn' not in str(traced.graph)
    with torch.no_grad():  # float64 (which oneDNN lacks): the plain ops, in float64
        out64 = copy.deepcopy(fast).double()(x.double())
    assert out64[-1].dtype == torch.float64 and close32(out64[-1].float(), ref[-1])
    # calling switch_to_deploy again only re-sets the CPU options (the folding is not applied twice)
    with torch.no_grad():
        again = fast.switch_to_deploy(cpu_kernels=False)(x)
    assert all(close32(b, a) for a, b in zip(ref, again))


def test_tools_reexec_with_malloc_settings():
    """tools/launch/malloc_env.ensure() re-executes the command (same pid) with glibc keeping freed memory."""
    code = ('import os, sys; sys.path.insert(0, "tools"); print("pid", os.getpid(), flush=True); '
            'from launch import malloc_env; malloc_env.ensure(); print("after", os.getpid(), malloc_env.describe())')
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if not k.startswith(('MALLOC_', 'INCEPTIONNEXT_'))})
    lines = out.stdout.split('\n')
    pids = {line.split()[1] for line in lines if line.startswith(('pid', 'after'))}
    assert out.returncode == 0 and len(pids) == 1, out.stdout + out.stderr
    assert sum(line.startswith('pid') for line in lines) == 2  # ran twice: before and after the exec
    assert 'glibc malloc keeps freed memory' in out.stdout
    off = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={**os.environ, 'INCEPTIONNEXT_MALLOC': 'default', 'MALLOC_MMAP_THRESHOLD_': '1'})
    assert off.stdout.count('pid') == 1 and 'glibc malloc defaults' in off.stdout


@pytest.mark.slow
def test_benchmark_tool_reports(tmp_path):
    out = subprocess.run(
        [sys.executable, 'tools/analysis_tools/benchmark.py', '--models', 'ours_atto', 'ours_atto_deploy',
         'timm:inception_next_atto',
         '--batch', '2', '--train-batch', '2', '--size', '64', '--reps', '2', '--iters', '1', '--warmup', '1',
         '--gemm', '--amp', '--ref', 'timm:inception_next_atto', '--out-csv', str(tmp_path / 't.csv'),
         '--out-md', str(tmp_path / 't.md'), '--out-png', str(tmp_path / 't.png')],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / 't.csv')))
    infer = {r['model']: r for r in rows if r['mode'] == 'infer' and r['precision'] == 'fp32'}
    train = {r['model'] for r in rows if r['mode'] == 'train' and r['precision'] == 'fp32'}
    assert set(infer) == {'ours_atto', 'ours_atto_deploy', 'timm:inception_next_atto'}
    assert train == {'ours_atto', 'timm:inception_next_atto'}  # the deploy form is inference-only
    # --amp on CPU: bf16 autocast rows for the same models, ratios within their precision
    amp = {(r['model'], r['mode']): r for r in rows if r['precision'] == 'amp-bf16'}
    assert set(amp) == {(m, 'infer') for m in infer} | {(m, 'train') for m in train}
    # every ratio is to --ref (not the first model listed) in the same mode and precision
    best = {(r['model'], r['mode'], r['precision']): float(r['best']) for r in rows}
    for r in rows:
        assert float(r['channels_first']) > 0 and float(r['channels_last']) > 0
        ref = best['timm:inception_next_atto', r['mode'], r['precision']]
        assert float(r['ratio']) == pytest.approx(float(r['best']) / ref)
    assert 0 < float(infer['ours_atto']['gemm_fraction']) < 5
    assert 0 < float(infer['ours_atto']['conv_gemm_fraction']) < 5
    assert 'fp32 GEMM rate on cpu: torch.mm' in out.stdout and 'glibc malloc keeps freed memory' in out.stdout
    assert (tmp_path / 't.png').stat().st_size > 10000


@pytest.mark.slow
def test_benchmark_seg_mode_times_both_upernets(tmp_path):
    """--mode seg: mmseg UperNet on ours and on timm's ConvNeXt-T features, each also in inference form."""
    tool('tools/analysis_tools/benchmark.py', '--mode', 'seg', '--size', '64', '--batch', '1', '--reps', '1',
         '--iters', '1', '--warmup', '1', '--out-csv', tmp_path / 's.csv')
    rows = {r['model']: r for r in csv.DictReader(open(tmp_path / 's.csv'))}
    assert set(rows) == {'upernet_ours_tiny', 'upernet_ours_tiny_deploy', 'upernet_timm_convnext_tiny',
                         'upernet_timm_convnext_tiny_fused'}
    assert all(r['mode'] == 'infer' and float(r['best']) > 0 for r in rows.values())
    ref = float(rows['upernet_timm_convnext_tiny']['best'])  # seg mode's default reference, not the first row
    assert all(float(r['ratio']) == pytest.approx(float(r['best']) / ref) for r in rows.values())
