"""Weight conversion and loading, registration in mmdet's and mmseg's scopes, and clear errors on bad input."""
import os

import pytest
import timm
import torch
from mmengine.registry import DefaultScope

from backbones import CheckpointError, InceptionNeXt, load_backbone_weights
from tests.helpers.logs import LogCapture
from tests.helpers.tool import tool


@pytest.fixture(scope='module')
def timm_atto_file(tmp_path_factory):
    """An official/timm-layout checkpoint (random weights), wrapped the way release files often are."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('w') / 'inception_next_atto.pth'
    sd = timm.create_model('inception_next_atto', pretrained=False).state_dict()
    torch.save({'model': {'module.' + k: v for k, v in sd.items()}}, path)
    return path, sd


def test_init_cfg_pretrained_loads_timm_file(timm_atto_file):
    path, sd = timm_atto_file
    model = InceptionNeXt('atto', out_norm=True, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert torch.equal(model.stages[2].blocks[3].token_mixer.dwconv_w.weight,
                       sd['stages.2.blocks.3.token_mixer.dwconv_w.weight'])
    assert torch.equal(model.stem.conv.weight, sd['stem.0.weight'])
    assert torch.equal(model.stages[1].downsample.conv.bias, sd['stages.1.downsample.1.bias'])


def test_converter_cli_roundtrip_and_prefix(tmp_path, timm_atto_file):
    path, sd = timm_atto_file
    out = tmp_path / 'cls.pth'
    tool('tools/model_converters/convert_weights.py', path, out, '--arch', 'atto')
    conv = torch.load(out, weights_only=True)
    assert torch.equal(conv['head.fc2.weight'], sd['head.fc2.weight'])
    # A classifier checkpoint loads into the backbone through prefix='backbone.' (as mmdet/mmseg configs do)
    model = InceptionNeXt('atto', init_cfg=dict(type='Pretrained', checkpoint=str(out), prefix='backbone.'))
    model.init_weights()
    assert torch.equal(model.stages[3].blocks[1].gamma, sd['stages.3.blocks.1.gamma'])


def test_wrong_arch_checkpoint_names_the_problem(timm_atto_file):
    path, _ = timm_atto_file
    with pytest.raises(CheckpointError, match=r'shape mismatch.*stem\.conv\.weight'):
        load_backbone_weights(InceptionNeXt('tiny'), str(path))


def test_in_channels_mismatch(timm_atto_file):
    path, _ = timm_atto_file
    with pytest.raises(CheckpointError, match=r'in_channels=4, the checkpoint 3'):
        load_backbone_weights(InceptionNeXt('atto', in_channels=4), str(path))


def test_wrong_keys(tmp_path, timm_atto_file):
    _, sd = timm_atto_file
    bad = tmp_path / 'bad.pth'
    torch.save({k.replace('mlp.fc1', 'mlp.lin1'): v for k, v in sd.items()}, bad)
    with pytest.raises(CheckpointError, match=r'unrecognised keys|missing in checkpoint'):
        load_backbone_weights(InceptionNeXt('atto'), str(bad))
    ours = {k: v for k, v in InceptionNeXt('atto').state_dict().items() if 'stages.3.blocks.1' not in k}
    torch.save(ours, bad)
    with pytest.raises(CheckpointError, match=r'missing in checkpoint: stages\.3\.blocks\.1\.'):
        load_backbone_weights(InceptionNeXt('atto'), str(bad))
    with pytest.raises(CheckpointError, match=r'no key starts with prefix'):
        load_backbone_weights(InceptionNeXt('atto'), str(bad), prefix='model.backbone.')


def test_truncated_and_missing_files(tmp_path, timm_atto_file):
    path, _ = timm_atto_file
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match='truncated or corrupt'):
        load_backbone_weights(InceptionNeXt('atto'), str(cut))
    with pytest.raises(CheckpointError, match='not found'):
        load_backbone_weights(InceptionNeXt('atto'), str(tmp_path / 'nope.pth'))
    err = tool('tools/model_converters/convert_weights.py', cut, tmp_path / 'o.pth', expect=2).stderr
    assert 'truncated or corrupt' in err and 'Traceback' not in err
    assert not (tmp_path / 'o.pth').exists()


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='huge'), r"unknown InceptionNeXt arch 'huge'; known: atto, tiny, small, base"),
    (dict(arch=dict(depths=(1, 1, 1), dims=(8, 16, 32))), 'needs 4 depths and 4 dims'),
    (dict(out_indices=(0, 4)), r'out_indices \(0, 4\) out of range'),
    (dict(frozen_stages=5), 'frozen_stages=5 out of range'),
    (dict(frozen_stages=-2), 'frozen_stages=-2 out of range'),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        InceptionNeXt(**{'arch': 'atto', **kwargs})


def test_bad_inputs_are_named():
    model = InceptionNeXt('atto').eval()
    with pytest.raises(ValueError, match=r'expects \(N, 3, H, W\) input, got \(1, 4, 64, 64\)'):
        model(torch.zeros(1, 4, 64, 64))
    with pytest.raises(ValueError, match='at least 32'):
        model(torch.zeros(1, 3, 31, 64))
    assert InceptionNeXt('atto', out_indices=(0,))(torch.zeros(1, 3, 8, 8))[0].shape == (1, 40, 2, 2)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_built_by_downstream_registries(scope):
    """The root-registry class is found from mmdet's and mmseg's scopes, by the name configs use."""
    import importlib
    registry = importlib.import_module(f'{scope}.registry').MODELS
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(dict(type='InceptionNeXt', arch='atto', out_indices=(1, 2)))
    assert isinstance(model, InceptionNeXt) and model.out_indices == (1, 2)


def test_empty_checkpoint_and_folder_output_are_one_line(tmp_path, timm_atto_file):
    """A 0-byte checkpoint (init_cfg, convert_weights, extract_backbone) and an output path that is a folder:
    one error line, exit 2, nothing left behind in the folder."""
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(CheckpointError, match=f'cannot read checkpoint {empty}: the file is empty'):
        load_backbone_weights(InceptionNeXt('atto'), str(empty))
    for script in ('tools/model_converters/convert_weights.py', 'tools/model_converters/extract_backbone.py'):
        err = tool(script, empty, tmp_path / 'o.pth', expect=2).stderr
        assert err.strip() == f'error: cannot read checkpoint {empty}: the file is empty (0 bytes)', err[-2000:]
    folder = tmp_path / 'out'
    folder.mkdir()
    err = tool('tools/model_converters/convert_weights.py', timm_atto_file[0], folder, expect=2).stderr
    assert 'Traceback' not in err
    assert err.strip().splitlines()[-1] == (
        f'error: output {folder} is a folder: give a file name, e.g. {folder}/weights.pth')
    assert os.listdir(folder) == []  # no temp file left


def test_the_log_names_the_entry_the_weights_came_from(tmp_path, timm_atto_file):
    """An official-style file with a model and an EMA copy: the weights of 'model' are loaded, and the log
    says so and names the copy left unused; --ema of extract_backbone takes timm's 'state_dict_ema'."""
    sd = timm_atto_file[1]
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in sd.items()}
    both = tmp_path / 'both.pth'
    torch.save({'model': sd, 'model_ema': ema}, both)
    m = InceptionNeXt('atto')
    with LogCapture() as log:
        load_backbone_weights(m, str(both))
    assert f"weights from {both}: entry 'model', {len(sd)} tensors (also in the file, not used: model_ema)" in \
        log.text.splitlines(), log.text
    assert torch.equal(m.stem.conv.weight, sd['stem.0.weight'])
    timm_style = tmp_path / 'timm_style.pth'
    torch.save({'state_dict': sd, 'state_dict_ema': ema}, timm_style)
    out = tmp_path / 'ema_backbone.pth'
    tool('tools/model_converters/extract_backbone.py', timm_style, out, '--ema')
    assert torch.equal(torch.load(out, weights_only=True)['stem.conv.weight'], ema['stem.0.weight'])


def test_a_file_that_is_not_a_checkpoint_is_named_as_such(tmp_path):
    import pickle

    from backbones.models.weights import read_checkpoint
    p = tmp_path / 'notes.pkl'
    with open(p, 'wb') as f:
        pickle.dump({'a': 1}, f, protocol=4)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(str(p))
    assert 'not a PyTorch checkpoint' in str(e.value)
    assert 'MMEngine' not in str(e.value) and 'weights_only' not in str(e.value)
