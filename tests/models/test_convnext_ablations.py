"""The paper's ConvNeXt-T ablation rows (the seed's table) exactly as released.

References we did not write: timm's ConvNeXt (``convnext_tiny``, and ``ConvNeXt(kernel_sizes=k)`` for the k5 / k3
rows), and for the partial rows timm's ConvNeXt-k3 whose depthwise convs are replaced by ``F.conv2d`` on the
last channels (the release's ``PartialConv2d``: identity | conv). Weights go through our converter. Maps and
logits are compared relative to their scale: max |ours - ref| / max |ref| <= 1e-5.
"""
import copy
import importlib.util
import os

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.convnext import ConvNeXt

from backbones import CheckpointError, InceptionNeXt, UserInputError, load_backbone_weights
from backbones.apis.build import ImageClassifier
from backbones.models.inceptionnext import CONVNEXT_ABLATIONS, LayerNorm2d, LinearMlp, PartialDWConv2d
from backbones.models.weights import (
    classifier_state_dict,
    convert_timm_state_dict,
    detect_layout,
    identify,
    state_dict_mismatch,
)
from tests.helpers import REPO
from tests.helpers.threads import single_torch_thread
from tests.helpers.tool import tool

RATIOS = {'par1_2': 1 / 2, 'par3_8': 3 / 8, 'par1_4': 1 / 4, 'par1_8': 1 / 8, 'par1_16': 1 / 16}
DEPTHS, DIMS = (3, 3, 9, 3), (96, 192, 384, 768)


@pytest.fixture(scope='module', autouse=True)
def _one_thread():
    yield from single_torch_thread()


def kernel_and_ratio(name):
    """The row's depthwise kernel and conv-channel ratio, from the seed's name."""
    if name == 'convnext_tiny':
        return 7, 1.0
    k, _, par = name[len('convnext_tiny_k'):].partition('_')
    return int(k), RATIOS[par] if par else 1.0


def randomise(model, seed=0):
    """Layer scales ~0.5-1 (so that every block counts), LayerNorm affine terms away from 1 / 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.4 - 0.2)
            if isinstance(getattr(m, 'gamma', None), nn.Parameter):
                m.gamma.copy_(torch.rand(m.gamma.shape, generator=g) * 0.5 + 0.5)
    return model


def rel_err(ours, ref):
    return ((ours - ref).abs().max() / ref.abs().max()).item()


def timm_convnext(kernel):
    torch.manual_seed(kernel)
    if kernel == 7:
        ref = timm.create_model('convnext_tiny', pretrained=False)
    else:
        ref = ConvNeXt(depths=DEPTHS, dims=DIMS, kernel_sizes=kernel)
    return randomise(ref.eval(), kernel)


class LastChannelsDWConv(nn.Module):
    """The reference partial conv: F.conv2d (depthwise) on the last ``c`` channels, the first pass through."""

    def __init__(self, weight, bias, first=False):
        super().__init__()
        self.weight, self.bias, self.first = weight, bias, first

    def forward(self, x):
        c = self.weight.shape[0]
        part = x[:, :c] if self.first else x[:, x.shape[1] - c:]
        y = F.conv2d(part, self.weight, self.bias, padding=self.weight.shape[-1] // 2, groups=c)
        return torch.cat((y, x[:, c:]) if self.first else (x[:, :x.shape[1] - c], y), dim=1)


def partial_reference(name, first=False):
    """timm's ConvNeXt-k3 with each conv_dw replaced by the reference partial conv, using the last (or, for the
    control, the first) int(C * r) filters of timm's conv; and the converted state dict for ours."""
    _, ratio = kernel_and_ratio(name)
    ref = timm_convnext(3)
    sd = convert_timm_state_dict(ref.state_dict())
    for i, stage in enumerate(ref.stages):
        for j, block in enumerate(stage.blocks):
            c = int(block.conv_dw.in_channels * ratio)
            w, b = block.conv_dw.weight.detach()[-c:].clone(), block.conv_dw.bias.detach()[-c:].clone()
            block.conv_dw = LastChannelsDWConv(w, b, first)
            key = f'backbone.stages.{i}.blocks.{j}.token_mixer.dwconv.'
            sd[key + 'weight'], sd[key + 'bias'] = w, b
    return ref, sd


def ours_from(name, sd):
    model = ImageClassifier(name).eval()
    assert state_dict_mismatch(model.state_dict(), sd) == ''
    model.load_state_dict(sd)
    model.backbone.out_indices = (0, 1, 2, 3)
    return model


def compare(ours, ref, sizes=((224, 224), (97, 131)), batch=1):
    for h, w in sizes:
        x = torch.randn(batch, 3, h, w)
        with torch.no_grad():
            ref_last, ref_feats = ref.forward_intermediates(x)
            ref_logits = ref.forward_head(ref_last)
            feats = ours.backbone(x)
            logits = ours.head(feats[-1])
        assert len(feats) == len(ref_feats) == 4
        for i, (a, b) in enumerate(zip(feats, ref_feats)):
            assert a.shape == b.shape == (batch, DIMS[i], h // 4 // 2 ** i, w // 4 // 2 ** i)
            assert rel_err(a, b) <= 1e-5, f'stage {i} at {h}x{w}: {rel_err(a, b):.2e}'
        assert rel_err(logits, ref_logits) <= 1e-5, f'logits at {h}x{w}: {rel_err(logits, ref_logits):.2e}'
        assert ref_logits.std() > 1e-2


# --------------------------------------------------------------------------------------------------
# Fidelity
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('name', ['convnext_tiny', 'convnext_tiny_k5', 'convnext_tiny_k3'])
def test_plain_rows_equal_timm_convnext(name):
    kernel, _ = kernel_and_ratio(name)
    ref = timm_convnext(kernel)
    sd = ref.state_dict()
    assert detect_layout(sd) == 'convnext-timm'
    ours = ours_from(name, convert_timm_state_dict(sd))
    assert ours.backbone.stages[2].blocks[0].token_mixer.dwconv.kernel_size == (kernel, kernel)
    compare(ours, ref)


@pytest.mark.parametrize('name', [n for n in CONVNEXT_ABLATIONS if '_par' in n])
def test_partial_rows_equal_functional_reference(name):
    ref, sd = partial_reference(name)
    ours = ours_from(name, sd)
    mixer = ours.backbone.stages[0].blocks[0].token_mixer
    assert isinstance(mixer, PartialDWConv2d) and mixer.conv_channels == int(96 * kernel_and_ratio(name)[1])
    compare(ours, ref, sizes=((224, 224), (97, 131)) if name.endswith('par1_8') else ((97, 131),))


def test_control_first_channels_do_not_match():
    """The comparison can fail: the same weights on the *first* channels (this repo's earlier variant) give
    other maps; and our model does use the last channels."""
    ref_first, sd = partial_reference('convnext_tiny_k3_par1_8', first=True)
    ours = ours_from('convnext_tiny_k3_par1_8', sd)
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        err = rel_err(ours.backbone(x)[0], ref_first.forward_intermediates(x)[1][0])
    assert err > 1e-2
    mixer = ours.backbone.stages[0].blocks[0].token_mixer
    y = torch.randn(1, 96, 9, 9)
    out = mixer(y)
    assert torch.equal(out[:, :84], y[:, :84]) and not torch.equal(out[:, 84:], y[:, 84:])


def test_training_step_and_autocast_equal_timm():
    """Train mode (drop path off): loss and every gradient equal timm's ConvNeXt on a small ConvNeXt (the
    layer scale applied to fc2's weights and the in-place shortcut change nothing); under bf16 autocast the
    maps have timm's dtypes."""
    depths, dims = (1, 1, 2, 1), (32, 64, 128, 256)
    torch.manual_seed(0)
    ref = randomise(ConvNeXt(depths=depths, dims=dims, kernel_sizes=3, num_classes=10))
    arch = {**InceptionNeXt.arch_settings['convnext_tiny_k3'], 'depths': depths, 'dims': dims}
    ours = ImageClassifier(arch, num_classes=10)
    ours.load_state_dict(convert_timm_state_dict(ref.state_dict()))
    ref.train(), ours.train()
    x = torch.randn(2, 3, 64, 96)
    ref_loss = ref(x).logsumexp(1).sum()
    loss = ours(x).logsumexp(1).sum()
    assert abs(loss.item() - ref_loss.item()) <= 1e-5 * abs(ref_loss.item())
    ref_loss.backward()
    loss.backward()
    ref_grads = convert_timm_state_dict({k: p.grad for k, p in ref.named_parameters()})
    grads = {k: p.grad for k, p in ours.named_parameters()}
    assert set(grads) == set(ref_grads)
    for k, g in grads.items():
        assert (g - ref_grads[k]).abs().max().item() <= 1e-4 * ref_grads[k].abs().max().item() + 1e-7, k
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        _, ref_feats = ref.eval().forward_intermediates(x)
        ours.backbone.out_indices = (0, 1, 2, 3)
        feats = ours.eval().backbone(x)
    for a, b in zip(feats, ref_feats):
        assert a.dtype == b.dtype and rel_err(a.float(), b.float()) <= 0.05


# --------------------------------------------------------------------------------------------------
# Released files: the official layout, the converter, the config
# --------------------------------------------------------------------------------------------------
def official_state_dict(name, seed=0):
    """A state dict with the official key names and shapes of the row (Meta's ConvNeXt / the InceptionNeXt
    release's models/convnext.py), random values; Meta's convnext_tiny file wraps it in {"model": ...}."""
    kernel, ratio = kernel_and_ratio(name)
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def put(key, *shape):
        sd[key] = torch.randn(*shape, generator=g)

    put('downsample_layers.0.0.weight', DIMS[0], 3, 4, 4), put('downsample_layers.0.0.bias', DIMS[0])
    put('downsample_layers.0.1.weight', DIMS[0]), put('downsample_layers.0.1.bias', DIMS[0])
    for i in range(1, 4):
        put(f'downsample_layers.{i}.0.weight', DIMS[i - 1]), put(f'downsample_layers.{i}.0.bias', DIMS[i - 1])
        put(f'downsample_layers.{i}.1.weight', DIMS[i], DIMS[i - 1], 2, 2)
        put(f'downsample_layers.{i}.1.bias', DIMS[i])
    for i, (depth, c) in enumerate(zip(DEPTHS, DIMS)):
        for j in range(depth):
            p = f'stages.{i}.{j}.'
            dw = p + ('dwconv.conv.' if ratio < 1 else 'dwconv.')
            put(dw + 'weight', int(c * ratio), 1, kernel, kernel), put(dw + 'bias', int(c * ratio))
            put(p + 'norm.weight', c), put(p + 'norm.bias', c)
            put(p + 'pwconv1.weight', 4 * c, c), put(p + 'pwconv1.bias', 4 * c)
            put(p + 'pwconv2.weight', c, 4 * c), put(p + 'pwconv2.bias', c)
            put(p + 'gamma', c)
    put('norm.weight', DIMS[-1]), put('norm.bias', DIMS[-1])
    put('head.weight', 1000, DIMS[-1]), put('head.bias', 1000)
    return sd


@pytest.mark.parametrize('name', CONVNEXT_ABLATIONS)
def test_official_layout_round_trips_every_tensor(name):
    official = official_state_dict(name)
    layout, converted = identify({'model': official} if name == 'convnext_tiny' else official)
    assert layout == 'convnext-official'
    model = ImageClassifier(name)
    assert state_dict_mismatch(model.state_dict(), converted) == ''
    model.load_state_dict(converted)  # strict
    ours = model.state_dict()
    assert len(converted) == len(official) == len(ours)  # nothing left over on either side
    by_print = {}
    for k, v in ours.items():  # random values: (shape, sum, first value) names one tensor
        by_print.setdefault((tuple(v.shape), round(v.sum().item(), 3), v.flatten()[0].item()), []).append(k)
    for k, v in official.items():
        hits = by_print.get((tuple(v.shape), round(v.sum().item(), 3), v.flatten()[0].item()), [])
        assert len(hits) == 1 and torch.equal(ours[hits[0]], v), (k, hits)
    assert len({h for hs in by_print.values() for h in hs}) == len(ours)


@pytest.fixture(scope='module')
def official_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp('convnext')
    files = {}
    for name in ('convnext_tiny', 'convnext_tiny_k3_par1_8'):
        sd = official_state_dict(name, seed=1)
        files[name] = folder / f'{name}_1k_224_ema.pth'
        torch.save({'model': sd} if name == 'convnext_tiny' else sd, files[name])
    return files


def _convert_main():
    path = os.path.join(REPO, 'tools', 'model_converters', 'convert_weights.py')
    spec = importlib.util.spec_from_file_location('convert_weights', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_converter_cli_on_released_layouts(tmp_path, official_files, capsys):
    main = _convert_main()
    out = tmp_path / 'par1_8.pth'
    assert main([str(official_files['convnext_tiny_k3_par1_8']), str(out), '--arch', 'convnext_tiny_k3_par1_8']) == 0
    assert 'fits arch convnext_tiny_k3_par1_8' in capsys.readouterr().out
    sd = torch.load(out, weights_only=True)
    assert sd['backbone.stages.2.blocks.8.token_mixer.dwconv.weight'].shape == (48, 1, 3, 3)
    # the command: the old name gets an error that says what the file is and which arch fits it
    err = tool('tools/model_converters/convert_weights.py', str(official_files['convnext_tiny_k3_par1_8']),
               str(tmp_path / 'x.pth'), '--arch', 'tiny_k3_par1_8', expect=2)
    assert 'Traceback' not in err and len([line for line in err.splitlines() if line.startswith('error: ')]) == 1
    for part in ('official ConvNeXt', 'depths (3, 3, 9, 3)', 'dims (96, 192, 384, 768)', '3x3 depthwise conv',
                 'partial ratio 1/8', 'arches that fit it: convnext_tiny_k3_par1_8', 'metanext_bn_tiny_k3_par1_8'):
        assert part in err, part
    assert not (tmp_path / 'x.pth').exists()
    # a known arch that does not fit: the mismatch, the file's description and the arch that fits
    with pytest.raises(CheckpointError, match=r'shape mismatches.*partial ratio 1/8.*fit it: convnext_tiny_k3_par1_8$'):
        main([str(official_files['convnext_tiny_k3_par1_8']), str(tmp_path / 'y.pth'),
              '--arch', 'convnext_tiny_k3_par1_4'])
    with pytest.raises(CheckpointError, match=r'7x7 depthwise conv, .*LayerNorm.*fit it: convnext_tiny$'):
        main([str(official_files['convnext_tiny']), str(tmp_path / 'y.pth'), '--arch', 'metanext_bn_tiny_k7'])
    with pytest.raises(UserInputError, match=r"--arch: unknown InceptionNeXt arch 'convnext_t'"):
        main([str(official_files['convnext_tiny']), str(tmp_path / 'y.pth'), '--arch', 'convnext_t'])
    # timm's ConvNeXt file, backbone only
    timm_file = tmp_path / 'timm_k5.pth'
    torch.save({'state_dict': ConvNeXt(depths=DEPTHS, dims=DIMS, kernel_sizes=5).state_dict()}, timm_file)
    assert main([str(timm_file), str(tmp_path / 'k5.pth'), '--arch', 'convnext_tiny_k5', '--backbone-only']) == 0
    assert 'stages.3.blocks.2.mlp.fc2.weight' in torch.load(tmp_path / 'k5.pth', weights_only=True)


def test_unmappable_checkpoint_says_what_it_is(tmp_path):
    """timm's InceptionNeXt-T into a ConvNeXt row, and a layout no rule maps."""
    sd = timm.create_model('inception_next_atto', pretrained=False).state_dict()
    with pytest.raises(CheckpointError, match=r'InceptionNeXt official release / timm layout .*Inception 3x3 \+ '
                                              r'1x9 \+ 9x1 .*BatchNorm.*arches that fit it: atto$'):
        load_backbone_weights(InceptionNeXt('convnext_tiny'), sd)
    with pytest.raises(CheckpointError, match=r"no key starts with prefix 'backbone.'.*official ConvNeXt"):
        load_backbone_weights(InceptionNeXt('convnext_tiny'), {'encoder.conv1.weight': torch.zeros(1)})


def test_config_model_loads_converted_checkpoint(tmp_path, official_files):
    """configs/convnext-tiny-ablation_eval_in1k.py: ConvNeXt's head, 1000 classes, the official eval transform; a
    converted released file loads strictly (load_classifier_weights, init_cfg, and tools/test.py's check)."""
    from backbones.apis.build import build_model
    from backbones.engine.checks import check_checkpoint_fits
    from backbones.utils.config import load_config
    from train_cls.model import load_classifier_weights
    cfg_path = os.path.join(REPO, 'configs', 'convnext-tiny-ablation_eval_in1k.py')
    cfg = load_config(cfg_path, {'model.backbone.arch': 'convnext_tiny_k3_par1_8'})
    tf = cfg.test_dataloader.dataset.pipeline[1]
    assert (tf.input_size, tf.crop_pct, tf.interpolation) == (224, 0.875, 'bicubic')
    model = build_model(cfg)
    assert model.head.fc2.out_features == 1000 and isinstance(model.head.fc1, nn.Identity)
    assert isinstance(model.backbone.stem.norm, LayerNorm2d)
    assert isinstance(model.backbone.stages[0].blocks[0].mlp, LinearMlp)
    official = official_state_dict('convnext_tiny_k3_par1_8', seed=1)
    load_classifier_weights(model, str(official_files['convnext_tiny_k3_par1_8']))
    assert torch.equal(model.head.fc2.weight, official['head.weight'])
    assert torch.equal(model.backbone.stages[3].blocks[2].token_mixer.dwconv.weight,
                       official['stages.3.2.dwconv.conv.weight'])
    # what tools/test.py checks before it evaluates (the converter's output: our classifier layout)
    check_checkpoint_fits(model, {'state_dict': classifier_state_dict(str(official_files['convnext_tiny_k3_par1_8']))},
                          'converted.pth')
    cfg.model.init_cfg = dict(type='Pretrained', checkpoint=str(official_files['convnext_tiny']))
    cfg.model.backbone.arch = 'convnext_tiny'
    model = build_model(cfg)
    model.init_weights()
    assert torch.equal(model.backbone.stem.conv.weight,
                       official_state_dict('convnext_tiny', seed=1)['downsample_layers.0.0.weight'])
    with pytest.raises(CheckpointError, match='does not fit'):
        load_classifier_weights(build_model(cfg_path), str(official_files['convnext_tiny_k3_par1_8']))


# --------------------------------------------------------------------------------------------------
# The backbone's options on these rows
# --------------------------------------------------------------------------------------------------
def test_dense_options(official_files):
    name = 'convnext_tiny_k3_par1_8'
    model = InceptionNeXt(name, out_indices=(1, 3), out_norm=True, frozen_stages=1, with_cp=True, drop_path_rate=0.1,
                          init_cfg=dict(type='Pretrained', checkpoint=str(official_files[name])))
    model.init_weights()  # the released file, converted on load; only the new out norms are not in it
    assert torch.equal(model.stages[1].downsample.conv.weight,
                       official_state_dict(name, seed=1)['downsample_layers.1.1.weight'])
    assert all(isinstance(n, LayerNorm2d) for n in model.out_norms.values())
    model.train()
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert not any(p.requires_grad for p in model.stages[0].parameters())
    assert all(p.requires_grad for p in model.stages[1].parameters())
    x = torch.randn(2, 3, 64, 64)
    outs = model(x)
    assert [o.shape for o in outs] == [(2, 192, 8, 8), (2, 768, 2, 2)]
    # with_cp: same gradients as without (drop path off for the comparison)
    plain = InceptionNeXt(name, out_indices=(3,))
    cp = InceptionNeXt(name, out_indices=(3,), with_cp=True)
    cp.load_state_dict(plain.state_dict())
    for m in (plain, cp):
        m(x)[0].sum().backward()
    ga, gb = plain.stages[2].blocks[4].mlp.fc1.weight.grad, cp.stages[2].blocks[4].mlp.fc1.weight.grad
    assert ga.abs().sum() > 0 and torch.allclose(ga, gb, atol=1e-6)
    assert plain.get_layer_depth('backbone.stages.2.blocks.7.mlp.fc2.weight', 'backbone.') == (5, 8)
    assert plain.get_layer_depth('backbone.stem.norm.weight', 'backbone.') == (0, 8)


def test_norm_cfg_and_old_names_are_errors():
    with pytest.raises(ValueError, match=r"normed with .*ChannelsFirstLN.*norm_cfg=.*SyncBN.*leave norm_cfg unset"):
        InceptionNeXt('convnext_tiny', norm_cfg=dict(type='SyncBN', requires_grad=True))
    with pytest.raises(ValueError, match=r'named as released: convnext_tiny_k3_par1_8; .*metanext_bn_tiny_k3_par1_8'):
        InceptionNeXt('tiny_k3_par1_8')
    with pytest.raises(ValueError, match=r'named as released: convnext_tiny; .*metanext_bn_tiny_k7'):
        InceptionNeXt('tiny_k7')
    with pytest.raises(ValueError, match=r"mlp_form='linear' norms channels-last"):
        InceptionNeXt({**InceptionNeXt.arch_settings['convnext_tiny'], 'block_norm_cfg': dict(type='BN')})
    # BN arches keep taking any norm_cfg (SyncBN in dense configs); the BN variants keep their layout
    bn = InceptionNeXt('metanext_bn_tiny_k3_par1_8', norm_cfg=dict(type='BN', requires_grad=False))
    assert not bn.stem.norm.weight.requires_grad and bn.stages[0].blocks[0].token_mixer.position == 'first'


def test_deploy_folds_layer_scale_and_keeps_layernorm():
    torch.manual_seed(0)
    model = randomise(InceptionNeXt('convnext_tiny_k3_par1_4', out_norm=True).eval())
    x = torch.randn(3, 3, 97, 131)
    with torch.no_grad():
        ref = model(x)
        deployed = copy.deepcopy(model).switch_to_deploy(chunk_bytes=300_000)  # sub-batches of one image
        out = deployed(x)
        plain = copy.deepcopy(model).switch_to_deploy(cpu_kernels=False)(x)
    for a, b, c in zip(ref, out, plain):
        assert rel_err(b, a) <= 1e-5 and rel_err(c, a) <= 1e-5
    assert all(b.gamma is None and isinstance(b.norm, nn.LayerNorm) for s in deployed.stages for b in s.blocks)
    rebuilt = InceptionNeXt('convnext_tiny_k3_par1_4', out_norm=True, deploy=True)
    rebuilt.load_state_dict(deployed.state_dict())
    rebuilt.switch_to_deploy(chunk_bytes=300_000)  # the same sub-batches: oneDNN's bits depend on the batch size
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(rebuilt(x), out))
    with pytest.raises(RuntimeError, match='inference only'):
        rebuilt.train()


def test_params_macs_and_benchmark_models_equal_timm():
    """Same counts as timm's convnext_tiny (the table's row); the benchmark builds the rows by name."""
    from backbones.analysis.benchmark import build_model
    from backbones.analysis.flops import count, count_arch
    ref = timm.create_model('convnext_tiny', pretrained=False).eval()
    params, macs = count_arch('convnext_tiny')
    assert (params, macs) == count(ref, torch.zeros(1, 3, 224, 224))
    # 28.59M / 4.47G with this counter (LayerNorms counted; timm's model card says 4.46 GMACs); printed 29M / 4.5G
    assert abs(params / 1e6 - 28.589) < 0.001 and abs(macs / 1e9 - 4.470) < 0.001
    x = torch.randn(1, 3, 64, 64)
    for name in ('ours_convnext_tiny_k3_par1_8', 'ours_convnext_tiny_k3_par1_8_deploy'):
        with torch.no_grad():
            assert build_model(name)(x).shape == (1, 1000)
