"""Weights named by URL: a local ``http.server`` (in this process) stands in for the release host. A URL is
downloaded once into ``$TORCH_HOME/hub/checkpoints`` (the second read makes no request), converted on load like
the local file (equal weights), its sha256 prefix checked; a 404 and an unreachable host are one line naming the
URL and the cache path to copy the file to; ``tools/misc/download_weights.py`` fills the cache for an offline
machine; ``mim download`` reads the model index."""
import functools
import http.server
import os
import os.path as osp
import shutil
import threading

import pytest
import timm
import torch

from backbones import InceptionNeXt
from backbones.utils.errors import CheckpointError
from tests.helpers import REPO
from tests.helpers.processes import free_port


class _Counting(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 -- http.server's name
        self.server.requests.append(self.path)
        return super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    """(base URL, served folder, list of request paths): the folder holds an official-layout atto file."""
    root = tmp_path_factory.mktemp('served')
    torch.manual_seed(0)
    sd = timm.create_model('inception_next_atto', pretrained=False).state_dict()
    torch.save({'model': sd}, root / 'inceptionnext_atto.pth')
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Counting, directory=str(root)))
    httpd.requests = []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}', root, httpd.requests
    httpd.shutdown()


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    return tmp_path / 'torch' / 'hub' / 'checkpoints'


def test_a_url_is_downloaded_once_and_loads_like_the_local_file(server, torch_home):
    from mmengine.runner.checkpoint import load_checkpoint

    from backbones.engine.mmengine_fixes import install_mmengine_fixes
    from backbones.models.weights import read_checkpoint
    base, root, requests = server
    url = f'{base}/inceptionnext_atto.pth'
    n = len(requests)
    by_url = InceptionNeXt('atto', init_cfg=dict(type='Pretrained', checkpoint=url))
    by_url.init_weights()
    assert len(requests) == n + 1 and (torch_home / 'inceptionnext_atto.pth').is_file()
    local = InceptionNeXt('atto', init_cfg=dict(type='Pretrained', checkpoint=str(root / 'inceptionnext_atto.pth')))
    local.init_weights()
    a, b = by_url.state_dict(), local.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    read_checkpoint(url)
    install_mmengine_fixes()  # MMEngine's load_checkpoint (load_from, mmseg's / mmdet's tools) reads the cache too
    load_checkpoint(torch.nn.Module(), url, strict=False)
    assert len(requests) == n + 1  # no second request


def test_a_wrong_hash_is_refused_and_not_kept(server, torch_home):
    from backbones.models.weights import read_checkpoint
    base, root, _ = server
    shutil.copy(root / 'inceptionnext_atto.pth', root / 'inceptionnext_atto-0123abcd.pth')
    with pytest.raises(CheckpointError, match=r'inceptionnext_atto-0123abcd.pth: the downloaded file does not match '
                                              r'the sha256 prefix in its name'):
        read_checkpoint(f'{base}/inceptionnext_atto-0123abcd.pth')
    assert not torch_home.exists() or not os.listdir(torch_home)


def test_404_and_unreachable_urls_are_one_line_naming_the_cache_path(server, torch_home, tmp_path):
    from backbones.models.weights import read_checkpoint
    from tests.helpers.toy import toy_runner
    base, _, _ = server
    cases = [(f'{base}/missing.pth', 'HTTP 404'), (f'http://127.0.0.1:{free_port()}/x/inx.pth', 'refused')]
    for url, why in cases:
        with pytest.raises(CheckpointError) as e:
            read_checkpoint(url)
        msg = str(e.value)
        assert msg.startswith(f'cannot download {url} (') and why in msg, msg
        assert msg.endswith(f'copy it to {torch_home / osp.basename(url)}') and '\n' not in msg, msg
    runner = toy_runner(tmp_path / 'w')  # load_from in a Runner: the same line
    runner._load_from = f'{base}/missing.pth'
    with pytest.raises(CheckpointError, match=f'cannot download {base}/missing.pth .*copy it to'):
        runner.load_or_resume()


def test_download_weights_fills_a_folder_for_an_offline_machine(server, torch_home, tmp_path, monkeypatch):
    """tools/misc/download_weights.py: the files of the named models, once; then an offline read finds them."""
    from backbones.models.weights import read_checkpoint
    from tests.helpers.tool import load_tool
    base, root, requests = server
    tool = load_tool('misc/download_weights.py')
    monkeypatch.setattr(tool, 'RELEASE', base + '/inceptionnext_{}.pth')
    n = len(requests)
    assert tool.main(['atto', '--to', str(tmp_path / 'fetched')]) == 0
    assert tool.main(['atto', '--to', str(tmp_path / 'fetched')]) == 0
    assert len(requests) == n + 1 and (tmp_path / 'fetched' / 'inceptionnext_atto.pth').is_file()
    assert tool.main(['atto']) == 0  # into the cache the URL loads look in
    assert (torch_home / 'inceptionnext_atto.pth').is_file()
    read_checkpoint(f'http://127.0.0.1:{free_port()}/model/inceptionnext_atto.pth')  # no server there: the cache


@pytest.mark.slow
def test_every_model_of_the_index_has_weights_and_mim_download_reads_it(tmp_path):
    """Every entry of configs/metafile.yml names its weights (mim 0.3.7's download fails on one without), the
    classifiers carry the release's top-1; ``mim download`` of every entry, in a fresh interpreter, with the
    files already in the destination (no network: mim skips a file that is there) dumps every config."""
    import subprocess
    import sys

    import yaml

    from tests.helpers.processes import subprocess_env
    models = yaml.safe_load(open(osp.join(REPO, 'configs', 'metafile.yml')))['Models']
    assert all(m.get('Weights', '').startswith('https://') for m in models), [m['Name'] for m in models]
    top1 = {m['Name']: m['Results'][0]['Metrics'].get('Top 1 Accuracy') for m in models
            if m['Results'][0]['Task'] == 'Image Classification'}
    assert top1['inceptionnext-t_8xb128-300e_in1k'] == 82.3 and top1['inceptionnext-b_8xb32-30e_in1k-384px'] == 85.2
    assert all(top1.values())
    dest = tmp_path / 'dest'
    dest.mkdir()
    for m in models:
        (dest / osp.basename(m['Weights'])).write_bytes(b'')
    names = [m['Name'] for m in models]
    r = subprocess.run([sys.executable, '-m', 'mim', 'download', 'inceptionnext-dense', '--config', *names,
                        '--dest', str(dest)], capture_output=True, text=True, timeout=600, cwd=str(tmp_path),
                       env=subprocess_env())
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert sorted(p for p in os.listdir(dest) if p.endswith('.py')) == sorted(n + '.py' for n in names)


def test_layouts_a_user_holds_are_converted_on_load(tmp_path, monkeypatch):
    """The backbone of a dense checkpoint (with the per-output norms ``out_norms.*``) goes through the converter's
    --arch check and the exporter's backbone:ARCH; an official-layout classifier file gives our classifier's keys
    (what tools/test.py, the demos and load_from load)."""
    from backbones.deploy.onnx import build_exportable
    from backbones.models.weights import model_state_dict
    from tests.helpers.tool import run_in_process
    torch.manual_seed(0)
    dense = InceptionNeXt('atto', out_norm=True)
    sd = {'backbone.' + k: v for k, v in dense.state_dict().items()}
    sd['decode_head.conv_seg.weight'] = torch.zeros(4, 8, 1, 1)
    torch.save({'state_dict': sd, 'meta': {}}, tmp_path / 'seg.pth')
    monkeypatch.syspath_prepend(osp.join(REPO, 'tools'))
    argv = [str(tmp_path / 'seg.pth'), str(tmp_path / 'bb.pth'), '--backbone-only', '--arch', 'atto']
    code, err = run_in_process('model_converters/convert_weights.py', argv)
    assert code in (0, None), err
    exp = build_exportable('backbone:atto', str(tmp_path / 'seg.pth'))
    (got,) = [v for k, v in exp.reference.state_dict().items() if k.endswith('stages.2.blocks.1.mlp.fc1.weight')]
    assert torch.equal(got, sd['backbone.stages.2.blocks.1.mlp.fc1.weight'])
    official = timm.create_model('inception_next_atto', pretrained=False).state_dict()
    ours = model_state_dict({'model': official})
    assert torch.equal(ours['backbone.stem.conv.weight'], official['stem.0.weight']) and 'head.fc2.weight' in ours
