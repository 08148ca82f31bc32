"""The backbone against timm's own InceptionNeXt, the published params/MACs table, and its options."""
import math

import pytest
import timm
import torch

from backbones import InceptionNeXt, MlpHead, convert_timm_state_dict, load_backbone_weights
from backbones.analysis.flops import PAPER, count_arch, paper_precision
from tests.helpers.models import randomise_norms

TIMM_NAMES = {'atto': 'inception_next_atto', 'tiny': 'inception_next_tiny', 'small': 'inception_next_small',
              'base': 'inception_next_base'}


def _timm_and_ours(arch):
    """timm's model with random weights (no hub), and ours loaded from its converted state dict."""
    torch.manual_seed(0)
    ref = randomise_norms(timm.create_model(TIMM_NAMES[arch], pretrained=False).eval())
    sd = convert_timm_state_dict(ref.state_dict())
    ours = InceptionNeXt(arch).eval()
    load_backbone_weights(ours, sd)
    head = MlpHead(ours.dims[-1], 1000).eval()
    head.load_state_dict({k[len('head.'):]: v for k, v in sd.items() if k.startswith('head.')})
    return ref, ours, head


@pytest.mark.parametrize('arch', ['atto', 'tiny', 'small', 'base'])
def test_features_and_logits_equal_timm(arch):
    """In float64: the two implementations compute the same function, so they agree to float64 rounding
    (measured: 3e-15 of each map's largest value; bound 1e-12). In float32 they differ by the rounding of
    different operation orders (1e-6 of the map here, CPU-dependent: the former absolute 1e-5 bound had a
    margin of 4 for base)."""
    ref, ours, head = (m.double() for m in _timm_and_ours(arch))
    for h, w in [(224, 224), (97, 131)]:
        x = torch.randn(2, 3, h, w, dtype=torch.float64)
        with torch.no_grad():
            ref_last, ref_feats = ref.forward_intermediates(x)
            ref_logits = ref.forward_head(ref_last)
            feats = ours(x)
            logits = head(feats[-1])
        assert len(feats) == 4
        for i, (a, b) in enumerate(zip(feats, ref_feats)):
            assert a.shape == b.shape == (2, ours.dims[i], h // 4 // 2 ** i, w // 4 // 2 ** i)
            assert (a - b).abs().max().item() <= 1e-12 * b.abs().max().item(), f'{arch} stage {i} at {h}x{w}'
            assert b.abs().mean() > 1e-2  # the comparison is not between near-zero maps
        assert (logits - ref_logits).abs().max().item() <= 1e-12 * ref_logits.abs().max().item()
        assert ref_logits.std() > 1e-3


def test_training_step_equals_timm():
    """Train-mode outputs (batch statistics) and every parameter gradient equal timm's: the block applies
    the layer scale to fc2's weights and adds the shortcut in place, which must not change the math.
    In float64, so that the bounds are about the math, not about a CPU's float32 rounding (the stem conv's
    bias, before a train-mode BN, has a gradient that is zero in exact arithmetic: in float32 it is pure
    rounding noise, 1e-7, which the former bound accepted with a margin of 5). Measured in float64: every
    gradient within 1e-15 of the largest one (bound 1e-12 of it, plus 1e-10 relative)."""
    ref, ours, head = (m.double() for m in _timm_and_ours('atto'))
    ref.train(), ours.train(), head.train()
    x = torch.randn(4, 3, 64, 96, dtype=torch.float64)
    ref_loss = ref(x).logsumexp(1).sum()
    loss = head(ours(x)[-1]).logsumexp(1).sum()
    assert abs(loss.item() - ref_loss.item()) <= 1e-12 * abs(ref_loss.item())
    ref_loss.backward()
    loss.backward()
    ref_grads = convert_timm_state_dict({k: p.grad for k, p in ref.named_parameters()})
    grads = {**{'backbone.' + k: p.grad for k, p in ours.named_parameters()},
             **{'head.' + k: p.grad for k, p in head.named_parameters()}}
    assert set(grads) == set(ref_grads)
    scale = max(g.abs().max().item() for g in ref_grads.values())  # (for the gradients that are zero)
    for k, g in grads.items():
        bound = 1e-10 * ref_grads[k].abs().max().item() + 1e-12 * scale
        assert (g - ref_grads[k]).abs().max().item() <= bound, k
    assert ours.stages[1].blocks[0].gamma.grad.abs().max() > 1e-3  # the layer scale does get a gradient


def test_autocast_keeps_timm_dtypes():
    """Under CPU autocast (bf16) every stage map has timm's dtype (an fp32 residual stream, as scaling by the
    fp32 layer scale gives) and about its values."""
    ref, ours, _ = _timm_and_ours('atto')
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        _, ref_feats = ref.forward_intermediates(x)
        feats = ours(x)
    for a, b in zip(feats, ref_feats):
        assert a.dtype == b.dtype
        assert (a.float() - b.float()).abs().max() <= 0.05 * b.float().abs().max()
    assert feats[-1].dtype == torch.float32


# Where the published table rounded up instead of to nearest (counted here and, for atto, by fvcore on
# timm's own model: atto 0.5049G printed 0.51G; convnext_tiny_k5 28.43M printed 29M).
ROUNDED_UP = {('atto', 224, 'MACs'), ('convnext_tiny_k5', 224, 'params')}


@pytest.mark.parametrize('arch,size', list(PAPER))
def test_params_and_macs_match_published_table(arch, size):
    params, macs = count_arch(arch, size)
    for what, value, printed in zip(('params', 'MACs'), (params / 1e6, macs / 1e9), PAPER[(arch, size)]):
        step = 10.0 ** -(len(str(printed).split('.')[1]) if '.' in str(printed) else 0)
        low, high = math.floor(value / step) * step, math.ceil(value / step) * step
        assert low - 1e-9 <= printed <= high + 1e-9, f'{arch}@{size} {what}: {value:.4f} vs {printed}'
        if (arch, size, what) not in ROUNDED_UP:
            assert paper_precision(value, printed) == printed, f'{arch}@{size} {what}: {value:.4f} vs {printed}'


def test_macs_agree_with_fvcore():
    fvcore = pytest.importorskip('fvcore.nn')
    from backbones.apis.build import classifier
    model = classifier('tiny')
    x = torch.zeros(1, 3, 224, 224)
    counter = fvcore.FlopCountAnalysis(model, x)
    counter.unsupported_ops_warnings(False)
    _, macs = count_arch('tiny')
    assert abs(counter.total() - macs) / macs < 1e-6
    assert abs(macs / 1e9 - 4.19) < 0.01  # the figure both counters give for timm's model


def test_timm_params_and_macs_equal_ours():
    from backbones.analysis.flops import count
    for arch, name in TIMM_NAMES.items():
        ref = timm.create_model(name, pretrained=False).eval()
        assert count_arch(arch) == count(ref, torch.zeros(1, 3, 224, 224))

@pytest.mark.parametrize('out_indices', [(0, 1, 2, 3), (1, 3), (2,), (-1,)])
def test_out_indices_shapes_and_norms(out_indices):
    model = InceptionNeXt('atto', out_indices=out_indices, out_norm=True).eval()
    x = torch.randn(1, 3, 64, 96)
    outs = model(x)
    idx = sorted(i % 4 for i in out_indices)
    assert [o.shape for o in outs] == [(1, model.dims[i], 16 >> i, 24 >> i) for i in idx]
    assert sorted(model.out_norms.keys()) == [str(i) for i in idx]


def test_out_norm_is_applied():
    torch.manual_seed(0)
    plain = InceptionNeXt('atto', out_indices=(1,))
    normed = InceptionNeXt('atto', out_indices=(1,), out_norm=True)
    normed.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(4, 3, 64, 64)
    normed.train()
    y = normed(x)[0]
    # train-mode BN over (N, H, W): each channel has zero mean and unit variance
    assert y.mean((0, 2, 3)).abs().max() < 1e-4
    assert (y.var((0, 2, 3), unbiased=False) - 1).abs().max() < 1e-2


def test_frozen_stages_and_norm_eval():
    model = InceptionNeXt('atto', frozen_stages=2, norm_eval=True)
    model.train()
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert not any(p.requires_grad for s in model.stages[:2] for p in s.parameters())
    assert all(p.requires_grad for s in model.stages[2:] for p in s.parameters())
    assert not model.stages[0].training
    bn = model.stages[3].blocks[0].norm
    assert not bn.training  # norm_eval keeps BN in eval even in a trainable stage
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(before, bn.running_mean)
    assert model.stages[3].blocks[0].mlp.fc1.training


def test_with_cp_gives_same_gradients():
    torch.manual_seed(0)
    a = InceptionNeXt('atto')
    b = InceptionNeXt('atto', with_cp=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 64, 64)
    for m in (a, b):
        sum(o.sum() for o in m(x)).backward()
    ga, gb = a.stages[2].blocks[1].mlp.fc1.weight.grad, b.stages[2].blocks[1].mlp.fc1.weight.grad
    # the recomputation runs the same kernels on the same inputs (measured: equal); the bound is relative to
    # the gradient's scale (6e-6 here: the former absolute 1e-6 allowed 15% of it)
    assert ga.abs().sum() > 0 and (ga - gb).abs().max() <= 1e-5 * ga.abs().max()


def test_drop_path_is_linear_and_only_in_training():
    model = InceptionNeXt('atto', drop_path_rate=0.3)
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, 'drop_prob') else 0.0
             for s in model.stages for b in s.blocks]
    assert rates[0] == 0.0 and abs(rates[-1] - 0.3) < 1e-6 and len(rates) == 12
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    assert torch.equal(model(x)[-1], model(x)[-1])
    model.train()
    torch.manual_seed(1)
    y1 = model(x)[-1]
    torch.manual_seed(2)
    assert not torch.equal(y1, model(x)[-1])


def test_ablation_mixers():
    """The seed's rows convolve the last int(C * r) channels (the release's PartialConv2d); the BN variants of
    the same sizes (not seed rows) the first ones."""
    from backbones import PartialDWConv2d
    x = torch.randn(1, 96, 8, 8)
    for name, conv, keep in (('convnext_tiny_k3_par1_8', slice(84, None), slice(None, 84)),
                             ('metanext_bn_tiny_k3_par1_8', slice(None, 12), slice(12, None))):
        mixer = InceptionNeXt(name).stages[0].blocks[0].token_mixer
        assert isinstance(mixer, PartialDWConv2d) and mixer.conv_channels == 12
        y = mixer(x)
        assert torch.equal(y[:, keep], x[:, keep]) and not torch.equal(y[:, conv], x[:, conv])
    for name in ('convnext_tiny', 'metanext_bn_tiny_k7'):
        full = InceptionNeXt(name).stages[0].blocks[0].token_mixer
        assert full.dwconv.kernel_size == (7, 7) and full.dwconv.groups == 96


def test_custom_arch_dict():
    m = InceptionNeXt(dict(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128)), out_indices=(3,)).eval()
    assert m(torch.randn(1, 3, 32, 32))[0].shape == (1, 128, 1, 1)
