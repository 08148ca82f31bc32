"""Our weights back in timm's ``inception_next_*`` layout (backbones/models/timm_export.py,
convert_weights.py --to timm).

atto and tiny: a random classifier of ours (non-trivial BN statistics and layer scales) written by the tool, loaded
by timm STRICTLY (a hub folder through ``local-dir:``, safetensors and .bin; one file through
``pretrained_cfg_overlay``), logits equal to ours at 224 and at an odd size. small and base (too big to run twice
on 2 cores): the exported keys and shapes equal timm's model's exactly (both built on the meta device). A dense
model's backbone loads into timm's feature extractor with equal features. Controls: our own layout is not what
timm loads; the map back (convert_weights.py, ours <- timm) gives the original tensors.
"""
import json
import os.path as osp
import sys

import pytest
import timm
import torch

from backbones.models.inceptionnext import InceptionNeXt, MlpHead
from backbones.models.timm_export import TIMM_NAMES, to_timm_state_dict
from backbones.models.weights import convert_timm_state_dict
from tests.helpers.models import randomise_norms
from tests.helpers.processes import run
from tests.helpers.threads import single_torch_thread

PY = sys.executable
single_thread = pytest.fixture(scope='module', autouse=True)(single_torch_thread)


class Classifier(torch.nn.Module):
    """Our classifier's layout (train_cls: ``backbone.*`` + ``head.*``)."""

    def __init__(self, arch, num_classes=1000):
        super().__init__()
        self.backbone = InceptionNeXt(arch, out_indices=(3,))
        self.head = MlpHead(self.backbone.dims[-1], num_classes, self.backbone.head_mlp_ratio)

    def forward(self, x):
        return self.head(self.backbone(x)[-1])


def _ours(arch, num_classes=1000, seed=0):
    torch.manual_seed(seed)
    m = randomise_norms(Classifier(arch, num_classes)).eval()
    for p in m.head.parameters():  # a head that does not sit at its init: the logits compare something
        p.data.normal_(0, 0.05)
    return m


def _close(a, b, tol=1e-5):
    return (a - b).abs().max().item() <= tol * b.abs().max().item()


@pytest.mark.parametrize('arch,out,fmt', [('atto', 'folder', 'both'), ('tiny', 'file', 'safetensors')])
def test_timm_loads_our_classifier_strictly(arch, out, fmt, tmp_path):
    ours = _ours(arch, num_classes=10)
    src = str(tmp_path / 'ours.pth')
    torch.save(ours.state_dict(), src)
    dst = str(tmp_path / ('hub' if out == 'folder' else f'{TIMM_NAMES[arch]}.safetensors'))
    run([PY, 'tools/model_converters/convert_weights.py', src, dst, '--to', 'timm', '--format', fmt])
    if out == 'folder':
        cfg = json.load(open(osp.join(dst, 'config.json')))
        assert cfg['architecture'] == TIMM_NAMES[arch] and cfg['num_classes'] == 10
        assert osp.isfile(osp.join(dst, 'model.safetensors')) and osp.isfile(osp.join(dst, 'pytorch_model.bin'))
        model = timm.create_model(f'local-dir:{dst}', pretrained=True)  # strict: pretrained_strict defaults to True
        bin_sd = torch.load(osp.join(dst, 'pytorch_model.bin'), weights_only=True)
        model.load_state_dict(bin_sd, strict=True)  # the .bin holds the same
    else:
        model = timm.create_model(TIMM_NAMES[arch], pretrained=True, num_classes=10,
                                  pretrained_cfg_overlay=dict(file=dst, num_classes=10))
    model.eval()
    for shape in ((224, 224), (97, 131)):
        x = torch.randn(2, 3, *shape)
        with torch.no_grad():
            assert _close(model(x), ours(x)), f'{arch} {shape}'


def test_our_layout_is_not_what_timm_loads(tmp_path):
    """The control: timm given our own file does not get our model (it refuses, or leaves weights at init)."""
    ours = _ours('atto')
    src = str(tmp_path / 'ours.pth')
    torch.save(ours.state_dict(), src)
    try:
        model = timm.create_model('inception_next_atto', pretrained=True, pretrained_cfg_overlay=dict(file=src))
    except RuntimeError as e:
        assert 'Missing key' in str(e) or 'Unexpected key' in str(e)
        return
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not _close(model.eval()(x), ours(x))


@pytest.mark.parametrize('arch', ['small', 'base'])
def test_keys_and_shapes_equal_timm(arch):
    with torch.device('meta'):
        ours = Classifier(arch)
        theirs = timm.create_model(TIMM_NAMES[arch])
    exported, dropped = to_timm_state_dict(ours.state_dict())
    want = theirs.state_dict()
    assert not dropped and list(exported) == list(want)
    assert all(exported[k].shape == want[k].shape for k in want)


def test_round_trip_is_exact():
    ours = _ours('atto')
    sd = ours.state_dict()
    back = convert_timm_state_dict(to_timm_state_dict(sd)[0])
    assert list(back) == list(sd) and all(torch.equal(back[k], sd[k]) for k in sd)


def test_dense_backbone_loads_as_timm_features(tmp_path):
    """An mmseg / mmdet checkpoint's backbone (with the dense per-output norms, which timm has no place for and
    are left out) -> timm's features_only model, whose four stage maps equal our backbone's."""
    torch.manual_seed(1)
    dense = randomise_norms(InceptionNeXt('atto', out_norm=True)).eval()
    sd = {'backbone.' + k: v for k, v in dense.state_dict().items()}
    sd['decode_head.conv_seg.weight'] = torch.zeros(6, 16, 1, 1)  # what an mmseg model also holds
    src = str(tmp_path / 'seg.pth')
    torch.save({'state_dict': sd, 'meta': {}}, src)
    dst = str(tmp_path / 'feats')
    out = run([PY, 'tools/model_converters/convert_weights.py', src, dst, '--to', 'timm'])
    assert 'left out' in out and 'out_norms' in out and 'no classifier head' in out
    model = timm.create_model(f'local-dir:{dst}', pretrained=True, features_only=True, pretrained_strict=False).eval()
    plain = InceptionNeXt('atto').eval()  # the same weights without the output norms
    plain.load_state_dict({k: v for k, v in dense.state_dict().items() if not k.startswith('out_norms.')})
    x = torch.randn(1, 3, 96, 160)
    with torch.no_grad():
        for a, b in zip(model(x), plain(x)):
            assert _close(a, b)
    full = timm.create_model('inception_next_atto', num_classes=0)
    missing, unexpected = full.load_state_dict(
        to_timm_state_dict({k: v for k, v in sd.items() if k.startswith('backbone.')})[0], strict=False)
    assert not unexpected and all(k.startswith('head.') for k in missing)


def test_refuses_what_timm_has_no_variant_for(tmp_path):
    m = InceptionNeXt('convnext_tiny_k3', norm_cfg=None)
    src = str(tmp_path / 'k3.pth')
    torch.save({'backbone.' + k: v for k, v in m.state_dict().items()}, src)
    out = run([PY, 'tools/model_converters/convert_weights.py', src, str(tmp_path / 'x'), '--to', 'timm'], expect=2)
    assert out.strip().splitlines()[-1].startswith('error: ') and 'no InceptionNeXt variant timm has' in out


def test_hub_config_carries_the_class_names_of_the_training_checkpoint(tmp_path):
    """config.json's ``label_names`` (what Hugging Face pipelines show) from ``meta.dataset_meta.classes``; none
    when the checkpoint has no names or they do not match the head."""
    from backbones.models.timm_export import export_timm
    ours = _ours('atto', num_classes=3)
    classes = ['cat', 'dog', 'bird']
    torch.save({'state_dict': ours.state_dict(), 'meta': {'dataset_meta': {'classes': classes}}}, tmp_path / 'c.pth')
    export_timm(str(tmp_path / 'c.pth'), str(tmp_path / 'hub'), log=lambda *a: None)
    assert json.load(open(tmp_path / 'hub' / 'config.json'))['label_names'] == classes
    torch.save({'state_dict': ours.state_dict(), 'meta': {'dataset_meta': {'classes': classes[:2]}}},
               tmp_path / 'd.pth')
    export_timm(str(tmp_path / 'd.pth'), str(tmp_path / 'hub2'), log=lambda *a: None)
    assert 'label_names' not in json.load(open(tmp_path / 'hub2' / 'config.json'))
