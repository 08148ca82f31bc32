"""The blocks' fast forms (backbones/models/ops/fast_block.py, triton_dwconv.py) compute the plain block's function.

On CPU: the BN fold (torch's token mixer) against the plain block, in train and eval mode, with drop path,
with_cp, BN running statistics, bf16 autocast, SyncBN over 2 gloo processes; a control that a wrong
running-statistics update is caught; the switch. The Triton kernels run through Triton's CPU interpreter
in a subprocess (TRITON_INTERPRET=1 must be set before triton is imported): the raw op against torch's
depthwise convs (fp32 / fp16 / bf16, forward and backward) and the whole fast block on its Triton path.
"""
import copy
import os
import sys

import pytest
import torch

from backbones import InceptionNeXt
from backbones.models.inceptionnext import MetaNeXtStage, _inception
from backbones.models.ops import fast_block
from tests.helpers import REPO
from tests.helpers.models import randomise_norms
from tests.helpers.processes import run
from tests.helpers.threads import single_torch_thread

_one_thread = pytest.fixture(scope='module', autouse=True)(single_torch_thread)

RTOL = 1e-5  # fp32 rounding, relative to the compared tensor's scale


def _stage(dim, mixer, depth=2, drop=0.25, with_cp=False, norm='BN', seed=0):
    torch.manual_seed(seed)
    stage = MetaNeXtStage(dim, dim, depth, downsample=False, drop_paths=[0.0] + [drop] * (depth - 1), with_cp=with_cp,
                          token_mixer=mixer, mlp_ratio=4, norm_cfg=dict(type=norm), act_cfg=dict(type='GELU'))
    for p in stage.parameters():  # the conv weights of MetaNeXtStage alone are PyTorch's default init
        p.data.normal_(0, 0.2) if p.dim() > 1 else None
    return randomise_norms(stage)


def _pair(stage):
    plain, fast = copy.deepcopy(stage), copy.deepcopy(stage)
    fast_block.install(plain, False)
    fast_block.install(fast, True)
    assert all(b.fast_mode is None for b in plain.blocks) and all(b.fast_mode == 'on' for b in fast.blocks)
    return plain, fast


def _steps(model, x, steps=3, train=True, autocast=None):
    """``steps`` forward + backward passes (seeded alike: drop path draws the same); returns the last output,
    the input's and the parameters' accumulated gradients and the buffers."""
    model.train(train)
    model.zero_grad(set_to_none=True)
    for s in range(steps):
        xi = x.clone().requires_grad_()
        torch.manual_seed(100 + s)
        with torch.autocast('cpu', dtype=autocast, enabled=autocast is not None):
            out = model(xi)
        w = torch.linspace(-1, 1, out.numel()).view(out.shape)  # a loss with a non-uniform gradient
        (out.float() * w).sum().backward()
    model = getattr(model, '_orig_mod', model)  # torch.compile's wrapper
    grads = {'input': xi.grad, **{k: p.grad for k, p in model.named_parameters()}}
    return out, grads, dict(model.named_buffers())


def _mismatches(a, b, rtol=RTOL):
    """Differences between two ``_steps`` results beyond ``rtol`` of each tensor's scale. A gradient that is
    0 in exact arithmetic (a bias before a train-mode BN) is rounding noise in both: it is compared against
    the scale of all gradients."""
    (out_a, g_a, buf_a), (out_b, g_b, buf_b) = a, b
    bad = []
    if out_a.dtype != out_b.dtype:
        bad.append(f'output dtype {out_a.dtype} vs {out_b.dtype}')
    if (out_a.float() - out_b.float()).abs().max() > rtol * out_a.float().abs().max():
        bad.append(f'output: {(out_a.float() - out_b.float()).abs().max():.3g}')
    assert g_a.keys() == g_b.keys() and buf_a.keys() == buf_b.keys()
    scale = max(g.abs().max().item() for g in g_a.values() if g is not None)
    for k in g_a:
        if (g_a[k] is None) != (g_b[k] is None):
            bad.append(f'grad {k}: None in one')
        elif g_a[k] is not None:
            err = (g_a[k].float() - g_b[k].float()).abs().max().item()
            if err > rtol * (g_a[k].abs().max().item() + scale):
                bad.append(f'grad {k}: {err:.3g} of {g_a[k].abs().max().item():.3g}')
    for k in buf_a:
        if buf_a[k].dtype == torch.long:
            if not torch.equal(buf_a[k], buf_b[k]):
                bad.append(f'buffer {k}: {buf_a[k].item()} vs {buf_b[k].item()}')
        elif (buf_a[k] - buf_b[k]).abs().max() > rtol * buf_a[k].abs().max():
            bad.append(f'buffer {k}: {(buf_a[k] - buf_b[k]).abs().max():.3g}')
    return bad


@pytest.fixture
def fast_calls(monkeypatch):
    """Counts the fast forms' runs (so that a test cannot pass by falling back to the plain forward)."""
    calls = []
    real = fast_block.fast_forward

    def counted(block, x, how):
        calls.append(how)
        return real(block, x, how)

    monkeypatch.setattr(fast_block, 'fast_forward', counted)
    return calls


# atto's stage 1 (dim 80, 1x9 / 9x1 bands, ratio 1/4) and T's stage 0 (dim 96, 1x11 / 11x1, ratio 1/8),
# and a partial depthwise mixer, at odd spatial sizes
CASES = {'atto': (80, _inception(9, 0.25)), 'tiny': (96, _inception()),
         'partial': (48, dict(type='PartialDWConv2d', kernel_size=3, ratio=0.25))}


@pytest.mark.parametrize('case', list(CASES))
@pytest.mark.parametrize('train', [True, False], ids=['train', 'eval'])
def test_fast_equals_plain(case, train, fast_calls):
    dim, mixer = CASES[case]
    plain, fast = _pair(_stage(dim, mixer))
    x = torch.randn(3, dim, 13, 11)
    bad = _mismatches(_steps(plain, x, train=train), _steps(fast, x, train=train))
    assert not bad, bad
    assert fast_calls and set(fast_calls) == {'torch'}
    if train:  # the running statistics moved (3 steps) and the drop path did drop something
        assert fast.blocks[1].norm.num_batches_tracked.item() == 3
        assert not torch.allclose(fast.blocks[0].norm.running_var, _stage(dim, mixer).blocks[0].norm.running_var)


def test_with_cp_and_channels_last(fast_calls):
    """Checkpointed blocks recompute the forward (the plain BN then updates its statistics twice; so does the
    fast form); a channels-last input."""
    dim, mixer = CASES['tiny']
    plain, fast = _pair(_stage(dim, mixer, with_cp=True))
    x = torch.randn(2, dim, 9, 15).contiguous(memory_format=torch.channels_last)
    bad = _mismatches(_steps(plain, x), _steps(fast, x))
    assert not bad, bad
    assert len(fast_calls) == 2 * 2 * 3  # 2 blocks, forward + recomputation, 3 steps
    assert fast.blocks[0].norm.num_batches_tracked.item() == 6


def test_momentum_none_and_no_running_stats():
    """Cumulative-average BN (momentum None) and BN without running statistics, in train and eval mode."""
    dim, mixer = CASES['atto']
    stage = _stage(dim, mixer, drop=0.0)
    stage.blocks[0].norm.momentum = None
    bn = stage.blocks[1].norm
    bn.track_running_stats, bn.running_mean, bn.running_var, bn.num_batches_tracked = False, None, None, None
    plain, fast = _pair(stage)
    x = torch.randn(2, dim, 7, 9)
    for train in (True, False):
        bad = _mismatches(_steps(plain, x, train=train), _steps(fast, x, train=train))
        assert not bad, (train, bad)


def test_full_model_train_step(fast_calls):
    """The whole backbone (stem, downsamples, out norms) with drop path: outputs of every stage and every
    parameter gradient."""
    torch.manual_seed(0)
    plain = randomise_norms(InceptionNeXt('atto', drop_path_rate=0.3, out_norm=True, fast_path=False))
    fast = copy.deepcopy(plain).set_fast_path(True)
    x = torch.randn(2, 3, 67, 45)
    runs = []
    for model in (plain, fast):
        model.train()
        torch.manual_seed(7)
        outs = model(x)
        sum((o * torch.linspace(-1, 1, o.numel()).view(o.shape)).sum() for o in outs).backward()
        runs.append((torch.cat([o.flatten() for o in outs]), {k: p.grad for k, p in model.named_parameters()},
                     dict(model.named_buffers())))
    bad = _mismatches(*runs)
    assert not bad, bad
    assert len(fast_calls) == 12


def test_bf16_autocast(fast_calls):
    """CPU bf16 autocast: same dtypes as the plain block (an fp32 residual stream), values within autocast's
    rounding, also for channels whose mean is large against their spread (centred on the running mean)."""
    dim, mixer = CASES['tiny']
    stage = _stage(dim, mixer)
    x = torch.randn(4, dim, 9, 11)
    x[:, :8] += 20  # large-mean identity channels
    with torch.no_grad():  # running means near the batch means, as after some training
        stage.blocks[0].norm.running_mean.copy_(x.mean((0, 2, 3)) + 0.1)
    plain, fast = _pair(stage)
    reference = _steps(copy.deepcopy(plain), x, steps=2)  # fp32
    a, b = _steps(plain, x, steps=2, autocast=torch.bfloat16), _steps(fast, x, steps=2, autocast=torch.bfloat16)
    assert a[0].dtype == b[0].dtype == torch.float32
    assert not _mismatches(a, b, rtol=3e-2), _mismatches(a, b, rtol=3e-2)
    # the fast form is about as close to fp32 as the plain block under autocast
    err = [(r[0] - reference[0][0]).abs().max().item() for r in (a, b)]
    assert err[1] <= 2 * err[0] + 1e-6, err
    assert set(fast_calls) == {'torch'}


def _grads_under_loss_scale(model, x, scale):
    """fp16 autocast forward + backward of a loss multiplied by ``scale`` (as GradScaler does), gradients
    unscaled: {name: grad}."""
    model.train().zero_grad(set_to_none=True)
    torch.manual_seed(3)
    with torch.autocast('cpu', dtype=torch.float16):
        out = model(x)
    ((out.float() * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum() * scale).backward()
    return {k: p.grad / scale for k, p in model.named_parameters()}


def test_fp16_gradients_in_range_under_a_loss_scale(monkeypatch, fast_calls):
    """Channels whose std spans 1e-2..3e2 (BN running statistics equal to them): at the largest power-of-2 loss
    scale the plain block's fp16 GEMMs take without overflow (where GradScaler settles), the fast form's
    gradients are finite and equal to the plain block's (fc1 sees the running-std-scaled input, so its fp16
    GEMMs work in the plain block's range). Control: centred only (NORMALISE_GEMM_INPUT False), fc1's weight
    gradient carries each channel's std and overflows fp16 at that scale."""
    dim, mixer = CASES['tiny']
    stage = _stage(dim, mixer, depth=1, drop=0.0)
    block = stage.blocks[0]
    block.gamma.data.fill_(1.0)
    x = torch.randn(2, dim, 8, 8) * torch.logspace(-2, 2.5, dim).view(1, -1, 1, 1)
    with torch.no_grad():
        t = block.token_mixer(x)
        block.norm.running_mean.copy_(t.mean((0, 2, 3)))
        block.norm.running_var.copy_(t.var((0, 2, 3)))
        block.norm.momentum = 0.0  # the statistics stay those of x
    plain, fast = _pair(stage)
    ref = _grads_under_loss_scale(plain, x, 1.0)  # the plain block's range at scale 1
    peak = max(g.abs().max().item() for g in ref.values())
    scale = 1.0
    while all(torch.isfinite(g).all() for g in _grads_under_loss_scale(plain, x, scale * 2).values()):
        scale *= 2
        if scale > 2 ** 40:
            break
    assert 1.0 < scale < 2 ** 40, (scale, peak)  # fp16 overflow bounds the plain block's scale
    a, b = _grads_under_loss_scale(plain, x, scale), _grads_under_loss_scale(fast, x, scale)
    assert fast_calls and all(torch.isfinite(g).all() for g in b.values())
    top = max(g.abs().max().item() for g in a.values())  # (0 in exact arithmetic: a bias before a train-mode BN)
    for k in a:
        err = (a[k] - b[k]).abs().max().item()
        assert err <= 2e-2 * a[k].abs().max().item() + 1e-3 * top, (k, err, a[k].abs().max().item())
    monkeypatch.setattr(fast_block, 'NORMALISE_GEMM_INPUT', False)
    c = _grads_under_loss_scale(fast, x, scale)
    assert not all(torch.isfinite(g).all() for g in c.values()), scale


def test_control_wrong_running_stats_is_caught(monkeypatch):
    """The comparison catches a fast form that forgets the running-statistics update or uses the biased
    variance for the running variance."""
    dim, mixer = CASES['atto']
    stage = _stage(dim, mixer)
    x = torch.randn(2, dim, 7, 9)
    reference = _steps(_pair(stage)[0], x)
    real = fast_block._update_running_stats

    def forgets(bn, mean, var, count):
        pass

    def biased(bn, mean, var, count):
        real(bn, mean, var * (count - 1) / count, count)

    for bug in (forgets, biased):
        monkeypatch.setattr(fast_block, '_update_running_stats', bug)
        bad = _mismatches(reference, _steps(_pair(stage)[1], x))
        assert any(b.startswith('buffer') for b in bad), bug.__name__
    monkeypatch.setattr(fast_block, '_update_running_stats', real)
    assert not _mismatches(reference, _steps(_pair(stage)[1], x))


def test_switch_and_state_dict(monkeypatch, fast_calls):
    monkeypatch.delenv(fast_block.ENV, raising=False)
    torch.manual_seed(0)
    auto = InceptionNeXt('atto')
    blocks = [b for s in auto.stages for b in s.blocks]
    assert auto.fast_path == 'auto' and all(b.fast_mode == 'auto' for b in blocks)
    # 'auto' on CPU: the plain forward in training (the fold does not pay there), the fold in eval mode
    auto.train()(torch.randn(2, 3, 32, 32))
    assert not fast_calls
    with torch.no_grad():
        auto.eval()(torch.randn(1, 3, 32, 32))
    assert fast_calls == ['torch'] * len(blocks)
    off = InceptionNeXt('atto', fast_path=False)
    assert off.fast_path == 'off' and all(b.fast_mode is None for s in off.stages for b in s.blocks)
    assert list(auto.state_dict()) == list(off.state_dict())
    off.load_state_dict(auto.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all((a - b).abs().max() <= 1e-5 for a, b in zip(auto.eval()(x), off.eval()(x)))
    # the environment variable decides for 'auto', not against an explicit choice
    monkeypatch.setenv(fast_block.ENV, '0')
    assert InceptionNeXt('atto').fast_path == 'off' and InceptionNeXt('atto', fast_path=True).fast_path == 'on'
    monkeypatch.setenv(fast_block.ENV, '1')
    assert InceptionNeXt('atto').fast_path == 'on' and InceptionNeXt('atto', fast_path=False).fast_path == 'off'
    monkeypatch.setenv(fast_block.ENV, 'maybe')
    with pytest.raises(ValueError, match=fast_block.ENV):
        InceptionNeXt('atto')
    monkeypatch.delenv(fast_block.ENV)
    with pytest.raises(ValueError, match='fast_path'):
        InceptionNeXt('atto', fast_path='fastest')
    # at run time; the deploy form keeps the mode (its Triton mixer on GPUs: the interpreter test), and on CPU
    # runs the folded plain ops (or oneDNN's): no fast form there; tracing sees the plain ops
    auto.set_fast_path(False)
    assert all(b.fast_mode is None for b in blocks)
    auto.set_fast_path(True).switch_to_deploy(cpu_kernels=False)
    assert all(b.fast_mode == 'on' and fast_block.is_deployed(b) for b in blocks)
    del fast_calls[:]
    with torch.no_grad():
        auto(x)
    assert fast_calls == []
    model = InceptionNeXt('atto').eval()
    traced = torch.jit.trace(model, x, check_trace=False)
    graph = str(traced.inlined_graph)
    assert 'batch_norm' in graph and 'addmv' not in graph


@pytest.mark.slow
def test_torch_compile_and_tracing(monkeypatch):
    """torch.compile (dynamo, whole graph, AOT autograd) of the fast form equals the plain block, running
    statistics included; the Triton path traces without a graph break (strict export: dynamo with fake
    tensors, no kernel runs) and with its backward op (make_fx of forward + gradients under autocast)."""
    from torch.fx.experimental.proxy_tensor import make_fx
    dim, mixer = CASES['tiny']
    plain, fast = _pair(_stage(dim, mixer))
    x = torch.randn(2, dim, 5, 7)
    torch._dynamo.reset()
    compiled = torch.compile(fast, backend='aot_eager', fullgraph=True)
    bad = _mismatches(_steps(plain, x, steps=2), _steps(compiled, x, steps=2))
    assert not bad, bad
    from backbones.models.ops import triton_dwconv
    if not triton_dwconv.AVAILABLE:
        return
    monkeypatch.setattr(fast_block, 'TRITON_DEVICES', {'cpu', 'cuda'})
    # no kernel runs here (not under the interpreter): the first-use self-test is taken as passed
    monkeypatch.setattr(fast_block, 'SELF_TESTS', {})
    monkeypatch.setattr(fast_block, '_self_test', lambda *args: None)
    fast.train()
    graph = str(torch.export.export(fast, (x,), strict=True).graph)
    assert graph.count('inceptionnext.inception_dw.default') == 2
    params = dict(fast.named_parameters())
    buffers = {k: v.clone() for k, v in fast.named_buffers()}

    def step(x, buffers, *ps):
        out = torch.func.functional_call(fast, {**dict(zip(params, ps)), **buffers}, (x,))
        return torch.autograd.grad(out.sum(), [x, *ps])

    with torch.autocast('cpu', dtype=torch.bfloat16):
        code = make_fx(step, tracing_mode='fake')(x.requires_grad_(), buffers, *params.values()).code
    assert code.count('inception_dw.default(') == 2 and code.count('inception_dw_backward.default(') == 2
    assert 'torch.bfloat16, True)' in code  # the mixer writes fc1's autocast dtype


# --------------------------------------------------------------------------------------------------
# CUDA dispatch: 'auto' is the plain block until measured; Triton only where it can run and passed its
# self-test; fallbacks warn once. CUDA maps are fake tensors (no GPU needed), the GPU's answers mocked.
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def gpu(monkeypatch):
    """A fake CUDA GPU: name, capability and platform mocked; fresh self-test and warning records."""
    from backbones.models.ops import triton_dwconv
    state = dict(name='NVIDIA Test GPU', capability=(9, 0))
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: state['name'])
    monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda device=None: state['capability'])
    monkeypatch.setattr(torch.version, 'hip', None)
    monkeypatch.setattr(triton_dwconv, 'AVAILABLE', True)
    monkeypatch.setattr(fast_block, 'SELF_TESTS', {})
    monkeypatch.setattr(fast_block, '_WARNED', set())
    monkeypatch.setattr(fast_block, '_self_test', lambda *args: None)
    monkeypatch.delenv(fast_block.ENV, raising=False)
    return state


def _cuda_plans(mode, n_calls=3):
    """plan() of a T block for a (fake) cuda:1 map, ``n_calls`` times; returns (plans, warnings)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    dim, mixer = CASES['tiny']
    block = _stage(dim, mixer, depth=1).blocks[0]
    fast_block.install(block, mode)
    import warnings
    with warnings.catch_warnings(record=True) as caught, FakeTensorMode():
        warnings.simplefilter('always')
        x = torch.empty(2, dim, 14, 14, device='cuda:1')
        plans = [fast_block.plan(block, x) for _ in range(n_calls)]
    return plans, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def test_cuda_auto_is_plain_until_measured(gpu, monkeypatch):
    assert fast_block.MEASURED_GPUS == {}  # no GPU class has measured the fast path faster yet
    assert _cuda_plans('auto') == ([None] * 3, [])
    assert _cuda_plans('on') == (['triton'] * 3, [])  # fast_path=True opts in
    # control: a measured GPU class takes it in 'auto'; another GPU does not
    monkeypatch.setattr(fast_block, 'MEASURED_GPUS', {'NVIDIA Test GPU': 'all'})
    assert _cuda_plans('auto')[0] == ['triton'] * 3
    gpu['name'] = 'NVIDIA Other GPU'
    assert _cuda_plans('auto')[0] == [None] * 3


@pytest.mark.parametrize('case', ['no-triton', 'rocm', 'sm_75'])
def test_cuda_where_triton_cannot_run(gpu, monkeypatch, case):
    """Triton missing, a ROCm build, compute capability < 8.0: fast_path=True takes torch's mixer (the fold
    stays), a measured 'auto' the plain block; one warning per device, naming the reason."""
    from backbones.models.ops import triton_dwconv
    reason = {'no-triton': 'Triton is not installed', 'rocm': 'ROCm', 'sm_75': 'compute capability 7.5'}[case]
    if case == 'no-triton':
        monkeypatch.setattr(triton_dwconv, 'AVAILABLE', False)
    elif case == 'rocm':
        monkeypatch.setattr(torch.version, 'hip', '6.2')
    else:
        gpu['capability'] = (7, 5)
    plans, warned = _cuda_plans('on')
    assert plans == ['torch'] * 3 and len(warned) == 1 and reason in warned[0] and 'cuda:1' in warned[0], warned
    monkeypatch.setattr(fast_block, 'MEASURED_GPUS', {'NVIDIA Test GPU': 'all'})
    assert _cuda_plans('auto') == ([None] * 3, [])  # (already warned for this device)
    assert fast_block.SELF_TESTS == {}  # no kernel tried


def test_cuda_without_triton_installed():
    """A CUDA machine without the triton package (import fails): the ops import, the model builds and runs,
    and the Triton kernels are reported unavailable."""
    code = ('import sys; sys.modules["triton"] = None\n'
            'import torch\n'
            'from backbones.models.ops import fast_block, triton_dwconv\n'
            'assert not triton_dwconv.AVAILABLE and triton_dwconv.inception_dw is None\n'
            'print(fast_block.triton_unusable(torch.device("cuda", 0)))\n'
            'from backbones import InceptionNeXt\n'
            'm = InceptionNeXt("atto", fast_path=True)\n'
            'print([o.shape[1] for o in m(torch.randn(1, 3, 64, 64))])\n')
    out = run([sys.executable, '-c', code])
    assert 'Triton is not installed' in out and '[40, 80, 160, 320]' in out, out


def test_device_guard():
    from backbones.models.ops import triton_dwconv
    guard = triton_dwconv.device_guard(torch.device('cuda', 1))
    assert isinstance(guard, torch.cuda.device) and guard.idx == 1
    assert not isinstance(triton_dwconv.device_guard(torch.device('cpu')), torch.cuda.device)


def _fake_kernels(kind):
    """A stand-in for the Triton module on CPU (no interpreter): 'exact' runs the torch reference; 'raises'
    fails like a compile error; 'wrong' is off by 1e-2; 'late' passes the self-test but fails for batches
    of 3 (a launch error on a shape the self-test did not cover)."""
    from types import SimpleNamespace

    from backbones.models.ops import triton_dwconv
    calls = []

    def op(x, *args):
        calls.append(tuple(x.shape))
        if kind == 'raises' or (kind == 'late' and x.shape[0] == 3):
            raise RuntimeError('PTXASError: ptxas fatal: boom')
        t, mean, var = triton_dwconv.reference(x, *args)
        return (t + 1e-2 if kind == 'wrong' else t), mean, var

    from backbones.models.ops import triton_fold
    fold = SimpleNamespace(supported=lambda *t: True, fold_mlp=triton_fold.reference, reference=triton_fold.reference)
    return SimpleNamespace(AVAILABLE=True, supported=lambda x, s, b: True, inception_dw=op,
                           reference=triton_dwconv.reference, calls=calls, fold=fold)


def _run_on_fake_kernels(monkeypatch, fake, batch: int):
    """Three training steps of T's stage-0 pair (plain, fast) on CPU with ``fake`` as the Triton module, fresh
    self-test and warning tables: (mismatches, RuntimeWarning messages)."""
    import warnings
    monkeypatch.setattr(fast_block, 'TRITON_DEVICES', {'cpu'})
    monkeypatch.setattr(fast_block, 'SELF_TESTS', {})
    monkeypatch.setattr(fast_block, '_WARNED', set())
    monkeypatch.setattr(fast_block, '_FOLD_FAILED', set())
    monkeypatch.setattr(fast_block, '_triton', lambda: fake)
    dim, mixer = CASES['tiny']
    plain, fast = _pair(_stage(dim, mixer))
    x = torch.randn(batch, dim, 5, 7)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        bad = _mismatches(_steps(plain, x), _steps(fast, x))
    return bad, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize('kind', ['exact', 'raises', 'wrong', 'late'])
def test_triton_self_test_and_fallback(kind, monkeypatch, fast_calls):
    """The first use runs the op against torch's computation; a compile / launch error or a mismatch gives the
    plain block (same results) with ONE warning; 'exact' (the control) takes the kernel path."""
    bad, warned = _run_on_fake_kernels(monkeypatch, _fake_kernels(kind), batch=3)  # ('late' fails for 3)
    assert not bad, bad
    assert len(fast_block.SELF_TESTS) == 1  # once per configuration (both blocks share it), not per call
    if kind == 'exact':
        assert warned == [] and fast_calls == ['triton'] * 6 and list(fast_block.SELF_TESTS.values()) == [None]
    else:
        assert len(warned) == 1 and 'plain forward' in warned[0], warned
        assert {'raises': 'boom', 'wrong': 'mismatch', 'late': 'boom'}[kind] in warned[0]
        assert fast_calls == (['triton'] if kind == 'late' else [])  # 'late': the first call fell back


def test_fold_kernel_failure_falls_back_to_torch_fold(monkeypatch, fast_calls):
    """The fold kernel passing its self-test but failing later (a launch error on another size): the blocks keep
    the Triton mixer and fold in torch ops, with ONE warning; results as the plain block's."""
    fake = _fake_kernels('exact')
    used = []

    def fold_mlp(*args):
        used.append(1)
        if len(used) > 2:  # the self-test's call and the first block's pass; the second block's fails
            raise RuntimeError('CUDA error: an illegal memory access (fold)')
        return fake.fold.reference(*args)

    fake.fold.fold_mlp = fold_mlp
    bad, warned = _run_on_fake_kernels(monkeypatch, fake, batch=2)
    assert not bad, bad
    assert len(warned) == 1 and 'fold kernel failed' in warned[0] and 'illegal memory' in warned[0], warned
    assert fast_calls == ['triton'] * 6 and len(used) == 3  # after the failure the kernel is not tried again


def test_triton_self_test_under_compile(monkeypatch):
    """torch.compile (fullgraph) runs the self-test while tracing (it is a constant to the graph): the kernel
    path when it passes, the plain block (one warning) when it fails."""
    import warnings
    monkeypatch.setattr(fast_block, 'TRITON_DEVICES', {'cpu'})
    dim, mixer = CASES['tiny']
    plain, fast = _pair(_stage(dim, mixer, depth=1))
    x = torch.randn(2, dim, 5, 7)
    ref = _steps(plain, x, steps=1)
    for kind in ('exact', 'raises'):
        monkeypatch.setattr(fast_block, 'SELF_TESTS', {})
        monkeypatch.setattr(fast_block, '_WARNED', set())
        fake = _fake_kernels(kind)
        monkeypatch.setattr(fast_block, '_triton', lambda: fake)
        torch._dynamo.reset()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            got = _steps(torch.compile(copy.deepcopy(fast), backend='aot_eager', fullgraph=True), x, steps=1)
        warned = [str(w.message) for w in caught if 'fast path' in str(w.message)]
        assert not _mismatches(ref, got), (kind, _mismatches(ref, got))
        assert len(fast_block.SELF_TESTS) == 1 and (list(fast_block.SELF_TESTS.values()) == [None]) == (kind == 'exact')
        assert len(warned) == (0 if kind == 'exact' else 1), warned
        # the self-test's calls (forward with and without statistics) and, when it passed, the traced block's
        assert len(fake.calls) == (3 if kind == 'exact' else 1), fake.calls
    torch._dynamo.reset()


# --------------------------------------------------------------------------------------------------
# SyncBN: 2 gloo processes, each half of the batch, equal one process with the whole batch
# --------------------------------------------------------------------------------------------------
def _ddp_worker(rank, world, port, path, x, state):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=world)
    try:
        dim, mixer = CASES['atto']
        stage = _stage(dim, mixer, norm='SyncBN', drop=0.0)
        stage.load_state_dict(state)
        fast_block.install(stage, True)
        # DDP refuses SyncBatchNorm on CPU (as nn.SyncBatchNorm refuses CPU tensors); the fast form synchronises
        # through gloo, so let DDP take the module as it would on GPUs
        torch.nn.parallel.DistributedDataParallel._passing_sync_batchnorm_handle = lambda self, module: None
        ddp = torch.nn.parallel.DistributedDataParallel(stage)
        part = x[:3] if rank == 0 else x[3:]  # unequal parts: 3 and 2 images
        outs = []
        for s in range(2):
            xi = part.clone().requires_grad_()
            torch.manual_seed(100 + s + 10 * rank)
            out = ddp(xi)
            (out * torch.linspace(-1, 1, x[:1].numel()).view(x[:1].shape)).sum().backward()
            outs.append(out.detach())
        grads = {k: p.grad * world for k, p in stage.named_parameters()}  # DDP averages; the losses are sums
        res = (outs, xi.grad, grads, {k: b.clone() for k, b in stage.named_buffers()})
        gathered = [None] * world
        dist.all_gather_object(gathered, res)
        if rank == 0:
            torch.save(gathered, path)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_syncbn_two_processes_equal_one(tmp_path):
    import socket

    import torch.multiprocessing as mp
    dim, mixer = CASES['atto']
    stage = _stage(dim, mixer, norm='SyncBN', drop=0.0)
    x = torch.randn(5, dim, 7, 9)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    path = str(tmp_path / 'ddp.pt')
    mp.spawn(_ddp_worker, args=(2, port, path, x, stage.state_dict()), nprocs=2, join=True)
    (outs0, gx0, grads, bufs), (outs1, gx1, _, _) = torch.load(path, weights_only=False)
    # one process, no process group: SyncBN is BN over the whole batch (plain forward)
    one = copy.deepcopy(stage)
    fast_block.install(one, False)
    one.train()
    for s in range(2):
        xi = x.clone().requires_grad_()
        out = one(xi)
        (out * torch.linspace(-1, 1, x[:1].numel()).view(x[:1].shape)).sum().backward()
        got = torch.cat([outs0[s], outs1[s]])
        assert (got - out).abs().max() <= RTOL * out.abs().max(), s
    ref = (out, {'input': xi.grad, **{k: p.grad for k, p in one.named_parameters()}}, dict(one.named_buffers()))
    bad = _mismatches(ref, (torch.cat([outs0[1], outs1[1]]), {'input': torch.cat([gx0, gx1]), **grads}, bufs))
    assert not bad, bad
    assert bufs['blocks.0.norm.num_batches_tracked'].item() == 2


# --------------------------------------------------------------------------------------------------
# Triton kernels through Triton's CPU interpreter (a subprocess: TRITON_INTERPRET=1 before triton loads)
# --------------------------------------------------------------------------------------------------
def _interpreter_main():
    """Run in the subprocess: the op against torch's convs, then the fast block's Triton path on CPU."""
    from backbones.models.ops import triton_dwconv as td
    assert td.AVAILABLE
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}
    for dtype in tol:
        # (fp32 also: 1334 positions, 2 programs of 4 sub-tiles whose statistics are merged)
        for n, c, h, w, g, ks, kb in [(2, 16, 7, 5, 2, 3, 5), (1, 40, 9, 11, 10, 3, 9), (3, 8, 1, 13, 1, 3, 11)] + (
                [(2, 4, 23, 29, 1, 3, 5)] if dtype == torch.float32 else []):
            torch.manual_seed(0)
            x = torch.randn(n, c, h, w).to(dtype).contiguous(memory_format=torch.channels_last)
            weights = [torch.randn(g, 1, ks, ks), torch.randn(g), torch.randn(g, 1, 1, kb), torch.randn(g),
                       torch.randn(g, 1, kb, 1), torch.randn(g)]
            center, rscale = torch.randn(c) * 0.3, torch.rand(c) + 0.5
            results = []
            for fn in (td.inception_dw, td.reference):
                xi = x.clone().requires_grad_()
                ws = [p.clone().requires_grad_() for p in weights]
                outs = fn(xi, *ws, center, rscale, dtype, True)
                torch.manual_seed(1)
                torch.autograd.backward(outs, [torch.randn(o.shape).to(o.dtype) for o in outs])
                results.append([*outs, xi.grad, *(p.grad for p in ws)])
            assert results[0][0].dtype == dtype and results[0][0].is_contiguous(memory_format=torch.channels_last)
            names = ['t', 'mean', 'var', 'dx', 'dw_sq', 'db_sq', 'dw_w', 'db_w', 'dw_h', 'db_h']
            # sums over the n*h*w positions (statistics, weight and bias gradients) cancel and round as any two
            # orders of summation do: their bound grows like sqrt(positions) (here up to 1334: x4.6)
            grow = max(1.0, (n * h * w) ** 0.5 / 8)
            for name, a, b in zip(names, *results):
                err = (a.float() - b.float()).abs().max().item()
                bound = tol[dtype] * (1.0 if name in ('t', 'dx') else grow) * b.float().abs().max().item() + 1e-6
                assert err <= bound, (dtype, (n, c, h, w), name, err)
            print('op ok', dtype, (n, c, h, w, g, ks, kb), flush=True)
    # the fold kernel (BN into fc1, layer scale into fc2) against its torch form, forward and backward
    from backbones.models.ops import triton_fold as tf
    for dtype in (torch.float32, torch.bfloat16):
        for has_w, has_b, has_g in ((True, True, True), (False, False, False), (True, False, True)):
            torch.manual_seed(0)
            c, hid = 40, 100  # several row blocks and column steps, ragged at both ends

            def mk(*shape, sc=1.0):
                return (torch.randn(*shape) * sc).to(dtype).requires_grad_()
            ins = [torch.randn(c).requires_grad_(), (torch.rand(c) + 0.5).requires_grad_(), torch.randn(c) * 0.3,
                   torch.rand(c) + 0.5,
                   mk(c) if has_w else None, mk(c) if has_b else None, 1e-5, mk(hid, c), mk(hid),
                   mk(c, sc=0.1) if has_g else None, mk(c, hid), mk(c)]
            leaves = [t for t in ins if isinstance(t, torch.Tensor) and t.requires_grad]
            results = []
            for fn in (tf.fold_mlp, tf.reference):
                outs = fn(*ins)
                torch.manual_seed(1)
                grads = torch.autograd.grad(outs, leaves, [torch.randn(o.shape).to(o.dtype) for o in outs])
                results.append(list(outs) + list(grads))
            for i, (a, b) in enumerate(zip(*results)):
                err = (a.float() - b.float()).abs().max().item()
                assert a.dtype == b.dtype and err <= tol[dtype] * b.float().abs().max().item() + 1e-6, (dtype, i, err)
            print('fold ok', dtype, has_w, has_b, has_g, flush=True)
    # the launches run under the map's device guard, forward and backward
    guarded, real_guard = [], td.device_guard
    td.device_guard = lambda device: guarded.append(device) or real_guard(device)
    x = torch.randn(1, 8, 3, 4).contiguous(memory_format=torch.channels_last).requires_grad_()
    ws = [torch.randn(1, 1, 3, 3), torch.randn(1), torch.randn(1, 1, 1, 5), torch.randn(1), torch.randn(1, 1, 5, 1),
          torch.randn(1)]
    td.inception_dw(x, *ws, torch.zeros(8), torch.ones(8), torch.float32, True)[0].sum().backward()
    td.device_guard = real_guard
    assert guarded == [x.device] * 2, guarded
    # the fast block's Triton path (fp32: as exact as torch's; bf16 autocast: within autocast's rounding), after
    # the real kernels passed their first-use self-test
    fast_block.TRITON_DEVICES = {'cpu', 'cuda'}
    calls = []
    real = fast_block.fast_forward
    fast_block.fast_forward = lambda block, x, how: calls.append(how) or real(block, x, how)
    for case in ('tiny',):  # (atto's 9-tap bands: the op checks above)
        dim, mixer = CASES[case]
        plain, fast = _pair(_stage(dim, mixer))
        x = torch.randn(2, dim, 5, 7)
        for train, steps in ((True, 2), (False, 1)):
            bad = _mismatches(_steps(plain, x, steps=steps, train=train), _steps(fast, x, steps=steps, train=train))
            assert not bad, (case, train, bad)
        a = _steps(plain, x, steps=1, autocast=torch.bfloat16)
        b = _steps(fast, x, steps=1, autocast=torch.bfloat16)
        assert not _mismatches(a, b, rtol=3e-2), _mismatches(a, b, rtol=3e-2)
        print('block ok', case, flush=True)
        # the deploy form (BN and layer scale folded): the mixer kernel without statistics, against the plain
        # folded blocks; fp32 and bf16 autocast (the same weights and running statistics: the bf16 step above
        # updated them to bf16 rounding)
        fast.load_state_dict(plain.state_dict())
        for m in (plain, fast):
            for b in m.eval().blocks:
                b.switch_to_deploy()
        fast_block.install(plain, False)
        fast_block.install(fast, True)
        n_before = len(calls)
        with torch.no_grad():
            for autocast, rtol in ((None, 1e-5), (torch.bfloat16, 3e-2)):
                with torch.autocast('cpu', dtype=autocast, enabled=autocast is not None):
                    a, b = plain(x), fast(x)
                assert a.dtype == b.dtype and (a.float() - b.float()).abs().max() <= rtol * a.float().abs().max(), (
                    autocast, (a.float() - b.float()).abs().max())
        assert len(calls) == n_before + 2 * len(fast.blocks)
        print('deploy ok', case, flush=True)
    assert calls and set(calls) == {'triton'}
    assert fast_block.SELF_TESTS and set(fast_block.SELF_TESTS.values()) == {None}, fast_block.SELF_TESTS
    # the op's registration: torch.library's schema and autograd checks (its fake-tensor check cannot run
    # in the interpreter, which reads the tensors' storage: test_triton_op_fake_kernel does that part)
    x = torch.randn(2, 8, 5, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    ws = [torch.randn(1, 1, 3, 3), torch.randn(1), torch.randn(1, 1, 1, 5), torch.randn(1), torch.randn(1, 1, 5, 1),
          torch.randn(1)]
    torch.library.opcheck(torch.ops.inceptionnext.inception_dw.default,
                          (x, *[p.requires_grad_() for p in ws], torch.zeros(8), torch.rand(8) + 0.5, torch.float32,
                           True),
                          test_utils=('test_schema', 'test_autograd_registration'))
    print('opcheck ok', flush=True)


@pytest.mark.slow
def test_triton_kernels_in_interpreter():
    pytest.importorskip('triton')
    out = run([sys.executable, '-c', 'from tests.models.test_fast_block import _interpreter_main; _interpreter_main()'],
              env={'TRITON_INTERPRET': '1', 'PYTHONPATH': REPO + os.pathsep + os.environ.get('PYTHONPATH', '')},
              timeout=600)
    assert out.count('op ok') == 10 and out.count('block ok') == 1 and 'opcheck ok' in out, out[-3000:]
    assert out.count('deploy ok') == 1 and out.count('fold ok') == 6, out[-3000:]


def test_triton_op_fake_kernel():
    """The ops' fake (meta) kernels, which torch.compile traces with: shapes, dtypes and channels-last strides,
    forward and backward, without running a kernel (no GPU or interpreter needed)."""
    td = pytest.importorskip('backbones.models.ops.triton_dwconv')
    if not td.AVAILABLE:
        pytest.skip('no triton')
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        x = torch.randn(2, 40, 9, 7).contiguous(memory_format=torch.channels_last)
        ws = [torch.randn(5, 1, 3, 3), torch.randn(5), torch.randn(5, 1, 1, 11), torch.randn(5),
              torch.randn(5, 1, 11, 1), torch.randn(5)]
        t, mean, var = td.inception_dw(x, *ws, torch.zeros(40), torch.ones(40), torch.bfloat16, True)
        grads = td.inception_dw_backward(x, t, t, var, mean, var, ws[0], ws[2], ws[4])
    assert t.shape == x.shape and t.dtype == torch.bfloat16 and t.is_contiguous(memory_format=torch.channels_last)
    assert mean.shape == var.shape == (40,) and mean.dtype == torch.float32
    assert [g.shape for g in grads] == [x.shape] + [p.shape for p in ws]
    assert grads[0].dtype == x.dtype and grads[0].is_contiguous(memory_format=torch.channels_last)


def test_gpu_bench_plan(tmp_path):
    """The bench's plan fits 8 minutes on one GPU with train rows first (fp16 autocast before fp32), has ours
    fast and plain beside the three peers in train / inference, fp16 / fp32, eager, and compiled train rows;
    controls: a plan with inference first, fp32 first or beyond the budget is flagged. The report lists the
    rows planned but not measured (a section stopped at its time limit)."""
    from backbones.analysis import gpu_bench as gb
    sections = gb.plan()
    assert gb.check_plan(sections) == []
    assert gb.BUDGET_S == 480 and gb.OVERHEAD_S + sum(s.limit_s for s in sections) <= 480
    names = [s.name for s in sections]
    assert names[:2] == ['train-eager', 'train-compiled'] and 'seg' not in names
    rows = [(s.kind, g.mode, g.amp, m) for s in sections for g in s.groups for m in g.models]
    assert rows[0] == ('eager', 'train', True, 'ours_tiny_fast')  # the headline row first
    for m in ('ours_tiny_fast', 'ours_tiny_nofast', 'timm:inception_next_tiny', 'timm:convnext_tiny', 'timm:resnet50'):
        for mode in ('train', 'infer'):
            for amp in (True, False):
                assert ('eager', mode, amp, m) in rows, (mode, amp, m)
    for m in ('ours_tiny_fast+compile', 'ours_tiny_nofast+compile', 'timm:convnext_tiny+compile'):
        assert ('compiled', 'train', True, m) in rows
    # controls
    eager_train, compiled_train, eager_infer = sections[0], sections[1], sections[2]
    assert any('after inference' in b for b in gb.check_plan((eager_infer, eager_train)))
    assert any('fp32 before' in b for b in gb.check_plan((eager_train._replace(groups=eager_train.groups[::-1]),)))
    assert any('budget' in b for b in gb.check_plan(sections + (compiled_train,)))
    assert any('limit' in b for b in gb.check_plan((compiled_train._replace(limit_s=60),)))
    # the report: rows planned but not measured
    with open(tmp_path / 'rows.csv', 'w') as f:
        f.write(','.join(gb.FIELDS) + '\n'
                'train-eager,timm:convnext_tiny,train,amp-fp16,128,224,1000.0,5000,\n'
                'train-eager,ours_tiny_fast,train,amp-fp16,128,224,1100.0,4000,\n')
    text = gb.report(str(tmp_path))
    assert '## planned, not measured' in text and '- train-compiled train ours_tiny_fast+compile' in text
    assert '- train-eager train ours_tiny_fast' not in text and '| train | amp-fp16 | 1.10 |' in text


@pytest.mark.slow
def test_gpu_bench_script(tmp_path):
    """tools/analysis_tools/gpu_bench.sh refuses to run without CUDA in one line; --dry-run prints the plan and
    its budget (train rows first); --models with an unknown row: one error line, exit 2; --smoke (the same code
    on CPU, tiny sizes) for a few rows writes rows.csv row by row (train first), the tables, csv and charts with
    no error row."""
    env = {'PYTHON': sys.executable, 'CUDA_VISIBLE_DEVICES': ''}
    if not torch.cuda.is_available():
        out = run(['bash', 'tools/analysis_tools/gpu_bench.sh', '--out', str(tmp_path / 'no')], expect=2, env=env)
        assert out.strip().count('\n') == 0 and 'no CUDA GPU' in out
    out = run(['bash', 'tools/analysis_tools/gpu_bench.sh', '--dry-run'], env=env)
    lines = out.strip().splitlines()
    assert lines[0].startswith('train-eager') and 'train amp-fp16' in lines[1] and 'ours_tiny_fast' in lines[1]
    assert 'total: 440 s' in lines[-1] and 'budget 480 s' in lines[-1] and 'PROBLEM' not in out
    out = run(['bash', 'tools/analysis_tools/gpu_bench.sh', '--dry-run', '--models', 'ours_tiny_fast,bogus'],
              expect=2, env=env)
    assert out.strip().count('\n') == 0 and 'bogus' in out
    rows = 'ours_tiny_fast,ours_tiny_nofast,timm:resnet50'
    out = run(['bash', 'tools/analysis_tools/gpu_bench.sh', '--smoke', '--models', rows, '--out',
               str(tmp_path / 'smoke')], env=env, timeout=900)
    md = (tmp_path / 'smoke' / 'gpu_bench.md').read_text()
    for part in ('## train-eager', '## infer-eager', 'ours_tiny_fast', 'ours_tiny_nofast', 'timm:resnet50',
                 '| train |', '| infer |', 'SMOKE RUN'):
        assert part in md, part
    assert '## errors' not in md and 'failed' not in out and '## planned, not measured' not in md
    with open(tmp_path / 'smoke' / 'rows.csv') as f:
        measured = [line.split(',')[2] for line in f.read().splitlines()[1:]]
    assert measured == ['train'] * 6 + ['infer'] * 6, measured
    assert all((tmp_path / 'smoke' / f).stat().st_size > 0 for f in ('gpu_bench.csv', 'gpu_bench.png'))
