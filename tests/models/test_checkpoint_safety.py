"""No checkpoint runs code on any path of the suite: a ``torch.save`` file whose pickle calls ``os.system``
(and one that first names a harmless class, ``argparse.Namespace``, which older readers took as the cue to
unpickle in full) through every tool and loader that reads weights: the marker file the payload would write
never appears, and each tool answers with one ``error:`` line and exit 2. Controls: the same file read with
torch's full unpickler does write the marker; ``INX_TRUST_CHECKPOINTS=1`` (the opt-out the error names) reads
it in full. A training checkpoint as MMEngine writes it without our plain-data fix (``HistoryBuffer`` and
numpy objects pickled) is still read, and resumes.
"""
import argparse
import glob
import os
import os.path as osp
import re
import shlex
import shutil
import sys

import numpy as np
import pytest
import torch

from backbones.utils.errors import CheckpointError
from tests.helpers import REPO
from tests.helpers.processes import run
from tests.helpers.tool import run_in_process
from tests.helpers.toy import toy_runner

SEG = 'configs/upernet_inceptionnext-atto_1xb8-160k_synthetic-ade-128x128.py'
TOOLS = osp.join(REPO, 'tools')
# the one line that refuses the file: the first global it names, and the opt-out
REFUSED = r'pickles (posix\.system|argparse\.Namespace), .*INX_TRUST_CHECKPOINTS=1'


class _Payload:
    """Unpickling calls ``os.system(command)``."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _write(path: str, marker: str, harmless_first: bool) -> str:
    from backbones import InceptionNeXt
    sd = InceptionNeXt('atto').state_dict()
    obj = {'args': argparse.Namespace(lr=0.1)} if harmless_first else {}
    obj.update(state_dict=sd, meta={'x': _Payload(f'touch {shlex.quote(marker)}')})
    torch.save(obj, path)
    return path


@pytest.fixture(scope='module', params=['payload', 'namespace-then-payload'])
def evil(request, tmp_path_factory):
    """(file, marker): the marker appears only if the file's code ran."""
    d = tmp_path_factory.mktemp('evil')
    marker = str(d / 'MARKER')
    return _write(str(d / 'evil.pth'), marker, request.param != 'payload'), marker


def test_the_payload_runs_under_the_full_unpickler(evil):
    """The control: the file really runs its code when unpickled in full."""
    path, marker = evil
    torch.load(path, weights_only=False)
    assert osp.exists(marker)
    os.remove(marker)


def _refused(err: str, path: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith('error: '), err[-3000:]
    assert re.search(REFUSED, lines[0]), lines[0]


DATA = [f'{s}_dataloader.dataset.data_root={{ade}}' for s in ('train', 'val', 'test')]


@pytest.mark.parametrize('tool, argv', [
    ('test.py', [SEG, '{ckpt}', '--cfg-options', *DATA]),
    ('train.py', [SEG, '--resume', '{ckpt}', '--work-dir', '{tmp}/w', '--cfg-options', *DATA]),
    pytest.param('train.py', [SEG, '--work-dir', '{tmp}/w', '--cfg-options', 'load_from={ckpt}',
                              'model.backbone.init_cfg=None', *DATA], marks=pytest.mark.slow),  # builds the Runner
    pytest.param('train.py', [SEG, '--work-dir', '{tmp}/w', '--cfg-options',
                              'model.backbone.init_cfg.checkpoint={ckpt}', *DATA], marks=pytest.mark.slow),
    ('misc/demo_seg.py', ['{tmp}/image.png', SEG, '{ckpt}', '--out', '{tmp}/o.png']),
    ('deployment/export_onnx.py', ['backbone:atto', '{ckpt}', '--out', '{tmp}/b.onnx']),
    ('deployment/export_onnx.py', [SEG, '{ckpt}', '--out', '{tmp}/s.onnx']),
    ('model_converters/convert_weights.py', ['{ckpt}', '{tmp}/o.pth']),
    ('model_converters/convert_weights.py', ['{ckpt}', '{tmp}/t', '--to', 'timm']),
    ('model_converters/extract_backbone.py', ['{ckpt}', '{tmp}/b.pth']),
    ('model_converters/publish_model.py', ['{ckpt}', '{tmp}/p.pth']),
], ids=lambda v: v if isinstance(v, str) else ' '.join(a for a in v[1:] if 'data_root' not in a).replace('{', '')
    .replace('}', ''))
def test_no_tool_runs_a_checkpoint(tool, argv, evil, tmp_path, monkeypatch, ade_like, ade):
    path, marker = evil
    monkeypatch.syspath_prepend(TOOLS)
    monkeypatch.chdir(REPO)
    monkeypatch.delenv('INX_TRUST_CHECKPOINTS', raising=False)
    (tmp_path / 'image.png').write_bytes(open(ade_like, 'rb').read())
    argv = [a.format(ckpt=path, tmp=tmp_path, ade=ade) for a in argv]
    code, err = run_in_process(tool, argv)
    assert not osp.exists(marker), f'tools/{tool} ran the file'
    assert code == 2, err[-3000:]
    _refused(err, path)
    assert not any(osp.exists(tmp_path / n) for n in ('o.pth', 'b.pth', 't', 'b.onnx', 's.onnx', 'o.png'))


@pytest.fixture(scope='module')
def ade(tmp_path_factory):
    from backbones.datasets.synthetic import write_ade
    root = str(tmp_path_factory.mktemp('ade'))
    write_ade(root, num_train=4, num_val=2, size=(64, 64), seed=2)
    return root


@pytest.fixture(scope='module')
def ade_like(tmp_path_factory):
    import cv2
    p = str(tmp_path_factory.mktemp('img') / 'image.png')
    cv2.imwrite(p, np.full((32, 48, 3), 128, np.uint8))
    return p


def test_no_loader_runs_a_checkpoint(evil, monkeypatch):
    """The library's loaders: init_cfg Pretrained, MMEngine's load_checkpoint once the fixes are installed (what
    mmseg's / mmdet's tools and inferencers on our configs reach), the readers of weights.py."""
    from mmengine.runner.checkpoint import load_checkpoint

    from backbones import InceptionNeXt
    from backbones.engine.mmengine_fixes import install_mmengine_fixes
    from backbones.models import weights
    path, marker = evil
    monkeypatch.delenv('INX_TRUST_CHECKPOINTS', raising=False)
    install_mmengine_fixes()
    calls = [
        lambda: InceptionNeXt('atto', init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights(),
        lambda: load_checkpoint(InceptionNeXt('atto'), path, map_location='cpu'),
        lambda: weights.read_checkpoint(path),
        lambda: weights.classifier_weights(path),
        lambda: weights.publish_checkpoint(path, path + '.pub'),
    ]
    for call in calls:
        with pytest.raises(CheckpointError, match=REFUSED):
            call()
        assert not osp.exists(marker)


def test_the_opt_out_reads_in_full_and_is_checked(evil, monkeypatch):
    from backbones.models.weights import read_checkpoint
    from backbones.utils.errors import BadValueError
    path, marker = evil
    monkeypatch.setenv('INX_TRUST_CHECKPOINTS', 'yes')
    with pytest.raises(BadValueError, match="INX_TRUST_CHECKPOINTS='yes': use 1"):
        read_checkpoint(path)
    assert not osp.exists(marker)
    monkeypatch.setenv('INX_TRUST_CHECKPOINTS', '1')
    read_checkpoint(path)
    assert osp.exists(marker)
    os.remove(marker)


@pytest.mark.slow
def test_mmseg_own_test_tool_on_our_config_runs_no_checkpoint(evil, tmp_path, ade):
    """mmseg's own tools/test.py on our config (its Runner installs our fixes through the config): refused, with
    our line at the end of mmseg's traceback."""
    import mmseg
    path, marker = evil
    tool = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'test.py')
    out = run([sys.executable, tool, osp.join(REPO, SEG), path, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
               *[a.format(ade=ade) for a in DATA]], expect=1, env={'INX_TRUST_CHECKPOINTS': ''})
    assert not osp.exists(marker)
    assert re.search('pickles (posix.system|argparse.Namespace)', out) and 'INX_TRUST_CHECKPOINTS=1' in out, out[-3000:]


def _legacy(ckpt: str, out: str) -> str:
    """The checkpoint as MMEngine 0.10.7 writes it without our ``to_plain``: HistoryBuffer and numpy pickled."""
    from backbones.engine.mmengine_fixes import from_plain
    c = from_plain(torch.load(ckpt, map_location='cpu', weights_only=True))
    torch.save(c, out)
    return out


def test_an_old_style_training_checkpoint_still_resumes(tmp_path):
    """HistoryBuffer, numpy arrays / scalars / dtypes pickled (torch's bare weights_only loader refuses them):
    read by the safe reader, and a resume from it ends equal to a resume from the plain-data original."""
    import pickle

    from mmengine.logging import HistoryBuffer

    from backbones.models.weights import read_checkpoint
    first = toy_runner(tmp_path / 'a', iters=4)
    first.train()
    plain = str(tmp_path / 'a' / 'iter_4.pth')
    legacy = _legacy(plain, str(tmp_path / 'legacy.pth'))
    with pytest.raises(pickle.UnpicklingError):
        torch.load(legacy, weights_only=True)
    c = read_checkpoint(legacy)
    assert all(isinstance(v, HistoryBuffer) for v in c['message_hub']['log_scalars'].values())
    ends = []
    for name, src in (('p', plain), ('l', legacy)):
        r = toy_runner(tmp_path / name, iters=8)
        r._resume, r._load_from = True, src
        r.train()
        assert r.iter == 8
        ends.append({k: v.clone() for k, v in r.model.state_dict().items()})
    assert all(torch.equal(ends[0][k], ends[1][k]) for k in ends[0])


# --------------------------------------------------------------------------------------------------
# Outputs never replace inputs
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('tool, argv, want', [
    ('model_converters/convert_weights.py', ['{a}', '{a}', '--backbone-only'], 'DST {a} is the input SRC'),
    ('model_converters/convert_weights.py', ['{a}', '{link}'], 'is the input SRC'),
    ('model_converters/convert_weights.py', ['{a}', '{tmp}/sub/../a.pth'], 'is the input SRC'),
    ('model_converters/convert_weights.py', ['{tmp}/hub/model.safetensors', '{tmp}/hub', '--to', 'timm'],
     'is the input SRC'),
    ('model_converters/extract_backbone.py', ['{a}', '{link}'], 'OUT {link} is the input checkpoint'),
    ('model_converters/publish_model.py', ['{a}', '{a}'], 'is the input checkpoint'),
    ('deployment/export_onnx.py', ['backbone:atto', '{a}', '--out', '{a}'], '--out {a}: name a .onnx file'),
    ('deployment/export_onnx.py', ['backbone:atto', '{tmp}/w.onnx', '--out', '{tmp}/w.onnx'],
     '--out {tmp}/w.onnx is the input checkpoint'),
], ids=lambda v: v if isinstance(v, str) and '{' not in v else None)
def test_outputs_never_replace_inputs(tool, argv, want, tmp_path, monkeypatch):
    """The converter, extractor, publisher and exporter refuse an output that is (or resolves to) an input, before
    reading anything: the input is unchanged, exit 2, one line."""
    from backbones import InceptionNeXt
    monkeypatch.syspath_prepend(TOOLS)
    monkeypatch.chdir(REPO)
    torch.save({'state_dict': {'backbone.' + k: v for k, v in InceptionNeXt('atto').state_dict().items()}},
               tmp_path / 'a.pth')
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'hub').mkdir()
    (tmp_path / 'hub' / 'model.safetensors').write_bytes(b'x')
    shutil.copy(tmp_path / 'a.pth', tmp_path / 'w.onnx')
    os.symlink(tmp_path / 'a.pth', tmp_path / 'link.pth')
    fmt = dict(a=tmp_path / 'a.pth', link=tmp_path / 'link.pth', tmp=tmp_path)
    before = {p: open(p, 'rb').read() for p in glob.glob(str(tmp_path / '**'), recursive=True) if osp.isfile(p)}
    code, err = run_in_process(tool, [a.format(**fmt) for a in argv])
    assert code == 2 and err.startswith('error: ') and len(err.strip().splitlines()) == 1, err[-2000:]
    assert want.format(**fmt) in err, err
    after = {p: open(p, 'rb').read() for p in glob.glob(str(tmp_path / '**'), recursive=True) if osp.isfile(p)}
    assert after == before
