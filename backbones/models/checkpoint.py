"""Reading a checkpoint, whatever names it: a local file, an ``http(s)://`` URL (downloaded once into torch's hub
cache) or a timm hub name; every path of the suite reads weights through ``read_checkpoint``. torch's
weights_only unpickler with the few non-tensor types MMEngine training checkpoints pickle allow-listed: no file
ever runs code (``INX_TRUST_CHECKPOINTS=1`` is the one, explicit, opt-out). Layouts, conversion and strict
loading of what is read: ``backbones.models.weights``.
"""
import os
import os.path as osp
import re
from typing import Optional

import torch
from mmengine.logging import print_log

from backbones.utils.errors import BadValueError, CheckpointError
from backbones.utils.io import error_line

# --------------------------------------------------------------------------------------------------
# Reading a checkpoint file: the one reader every path of the suite uses
# --------------------------------------------------------------------------------------------------
# The opt-out for a file the user vouches for (a timm training checkpoint pickling its argparse
# Namespace, say): read in full, which runs whatever the file names. Off unless set to 1; the error that
# refuses such a file names it.
TRUST_ENV = 'INX_TRUST_CHECKPOINTS'


def _history_buffer_method(obj, name: str):
    """What ``getattr`` may return while reading an MMEngine training checkpoint written before checkpoints
    became plain data: only ``HistoryBuffer``'s own statistics methods (its pickle names them through
    ``getattr(HistoryBuffer, 'mean')``); anything else is refused."""
    from mmengine.logging import HistoryBuffer
    if obj is HistoryBuffer and name in ('min', 'max', 'current', 'mean'):
        return getattr(HistoryBuffer, name)
    raise CheckpointError(f'refusing getattr({getattr(obj, "__name__", type(obj).__name__)}, {name!r}) in a '
                          'checkpoint: only MMEngine HistoryBuffer statistics are read')


def _training_globals() -> list:
    """The globals an MMEngine training checkpoint pickles besides tensors when it is not written as plain
    data (MMEngine's own Runner, or ours before ``to_plain``): ``HistoryBuffer`` (with its statistics methods
    through a ``getattr`` that returns nothing else) and numpy arrays, scalars and dtypes. Given to torch's
    weights_only unpickler, which calls nothing but these."""
    import numpy as np
    from mmengine.logging import HistoryBuffer
    core = np._core if hasattr(np, '_core') else np.core
    out = [HistoryBuffer, (_history_buffer_method, 'builtins.getattr'), np.ndarray, np.dtype,
           core.multiarray._reconstruct, core.multiarray.scalar]
    out += [type(np.dtype(t)) for t in ('float64', 'float32', 'float16', 'int64', 'int32', 'int16', 'int8',
                                        'uint8', 'uint16', 'uint32', 'uint64', 'bool', 'complex64', 'complex128')]
    for name in ('numpy.core.multiarray._reconstruct', 'numpy.core.multiarray.scalar'):  # numpy 1.x names
        out.append((getattr(core.multiarray, name.rsplit('.', 1)[1]), name))
    return out


def trust_all_checkpoints() -> bool:
    """Whether ``INX_TRUST_CHECKPOINTS=1`` is set (any other value but unset / 0 is an error)."""
    value = os.environ.get(TRUST_ENV, '').strip()
    if value in ('', '0'):
        return False
    if value == '1':
        return True
    raise BadValueError(f'{TRUST_ENV}={value!r}: use 1 (read checkpoints in full, running any code they '
                        'name) or 0 / unset')


def load_file(path: str, map_location='cpu'):
    """``torch.load`` of a local file with torch's weights_only unpickler and the training-checkpoint types
    of ``_training_globals`` allowed: tensors, plain data, MMEngine's ``HistoryBuffer`` and numpy values,
    never anything that runs code. No fallback to the full unpickler (only ``INX_TRUST_CHECKPOINTS=1`` reads
    in full). Errors are ``CheckpointError`` lines naming the file."""
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint file not found: {path}')
    if trust_all_checkpoints():
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(_training_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 -- torch raises several types for bad files
        if isinstance(e, CheckpointError):  # _history_buffer_method
            raise CheckpointError(f'{path}: {e}; not read (set {TRUST_ENV}=1 to read a file you trust in '
                                  'full)') from None
        msg = error_line(e, first=1, limit=300)
        if os.path.getsize(path) == 0:
            raise CheckpointError(f'cannot read checkpoint {path}: the file is empty (0 bytes)') from None
        found = re.search(r'(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)', str(e))
        if found:
            raise CheckpointError(
                f'{path} pickles {found.group(1)}, not only tensors and plain data: not read, as reading it '
                f'could run code the file names (set {TRUST_ENV}=1 to read a file you trust in full)') from None
        why = re.search(r'WeightsUnpickler error:\s*(.+)', str(e))
        why = why.group(1).strip() if why else msg  # (not torch's advice to load with weights_only=False)
        raise CheckpointError(f'cannot read checkpoint {path}: not a PyTorch checkpoint (a torch.save file of '
                              f'tensors), or a truncated or corrupt one ({why})') from None


# --------------------------------------------------------------------------------------------------
# Weights by URL or hub name: downloaded once into torch's hub cache, then read like local files
# --------------------------------------------------------------------------------------------------
HUB_PREFIXES = ('hf-hub:', 'hf_hub:', 'timm/')  # timm's hub names: timm/inception_next_tiny.sail_in1k
DOWNLOAD_TIMEOUT_S = 60  # per network operation: an offline compute node fails in a minute, never hangs


def is_url(name: str) -> bool:
    return str(name).startswith(('http://', 'https://'))


def is_hub_name(name: str) -> bool:
    """``timm/<model>.<tag>`` (or ``hf-hub:`` + a repo id) that is not a local path or a file name."""
    name = str(name)
    return (name.startswith(HUB_PREFIXES) and not osp.exists(name)
            and not name.endswith(('.pth', '.pt', '.bin', '.safetensors', '.ckpt')))


def cache_path(url: str) -> str:
    """Where ``url`` is kept: ``$TORCH_HOME/hub/checkpoints/<file name>``, the folder MMEngine, torchvision
    and timm's URL loads use (so a file one of them downloaded is found here, and the other way round)."""
    from urllib.parse import urlparse
    name = osp.basename(urlparse(url).path)
    if not name:
        raise CheckpointError(f'{url}: the URL names no file')
    return osp.join(torch.hub.get_dir(), 'checkpoints', name)


def known_hash(url: str) -> Optional[str]:
    """The sha256 prefix a release file carries in its name (``name-<hex>.pth``, torch.hub's convention, which
    ``publish_model.py`` writes too), or None."""
    found = torch.hub.HASH_REGEX.search(osp.basename(url))
    return found.group(1) if found and len(found.group(1)) >= 8 else None


def download(url: str, dst: Optional[str] = None) -> str:
    """``url`` downloaded into ``dst`` (default ``cache_path(url)``) once, with a progress bar, its hash
    checked where its name carries one; a file already there is used without a request. Unreachable, offline,
    404: one ``CheckpointError`` naming the URL and the path to copy the file to."""
    import socket
    import urllib.error
    dst = dst or cache_path(url)
    if osp.isfile(dst):
        return dst
    os.makedirs(osp.dirname(dst) or '.', exist_ok=True)
    print_log(f'downloading {url} to {dst}', logger='current')
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        torch.hub.download_url_to_file(url, dst, hash_prefix=known_hash(url), progress=True)
    except RuntimeError as e:
        if 'invalid hash value' in str(e):
            raise CheckpointError(f'{url}: the downloaded file does not match the sha256 prefix in its name '
                                  f'({error_line(e)}); not kept') from None
        raise
    except (urllib.error.URLError, OSError, ValueError) as e:
        why = getattr(e, 'reason', None) or error_line(e) or type(e).__name__
        code = f'HTTP {e.code}: ' if isinstance(e, urllib.error.HTTPError) else ''
        raise CheckpointError(f'cannot download {url} ({code}{why}); on a machine without network access, '
                              f'download it elsewhere and copy it to {dst}') from None
    finally:
        socket.setdefaulttimeout(old)
    return dst


def hub_file(name: str) -> str:
    """The weights file of a Hugging Face hub model (``timm/inception_next_tiny.sail_in1k``, or ``hf-hub:`` +
    that): ``model.safetensors`` through huggingface_hub's cache (downloaded once)."""
    repo = name.split(':', 1)[1] if name.startswith(('hf-hub:', 'hf_hub:')) else name
    try:
        from huggingface_hub import hf_hub_download
        return hf_hub_download(repo_id=repo, filename='model.safetensors')
    except Exception as e:  # noqa: BLE001 -- offline, no such repo, no such file: one line either way
        why = error_line(e, first=1, limit=200)
        raise CheckpointError(f'cannot get {name} from the Hugging Face hub ({why}); offline, run '
                              f'`huggingface-cli download {repo} model.safetensors` where there is network '
                              'access and copy its cache (~/.cache/huggingface/hub) here, or give the file\'s '
                              'local path') from None


def resolve_checkpoint(name: str) -> str:
    """A local file for a checkpoint name: a path as it is (``~`` expanded); an ``http(s)://`` URL downloaded
    once into torch's hub cache (``download``); a timm hub name through huggingface_hub (``hub_file``)."""
    name = str(name)
    if is_url(name):
        return download(name)
    if is_hub_name(name):
        return hub_file(name)
    return osp.expanduser(name)


def read_checkpoint(path: str, map_location='cpu'):
    """The checkpoint ``path`` names, read safely: a local file, an ``http(s)://`` URL or a timm hub name
    (``resolve_checkpoint``: downloaded once); a ``.safetensors`` file with safetensors, any other with
    ``load_file``. A training checkpoint of MMEngine's Runner (ours or another's), a state dict, an official /
    timm release file. What every tool, the Runner's ``load_from`` / ``--resume`` and ``init_cfg`` read
    weights with."""
    local = resolve_checkpoint(path)
    if local.endswith('.safetensors'):
        if not osp.isfile(local):
            raise CheckpointError(f'checkpoint file not found: {local}')
        from safetensors.torch import load_file as load_safetensors
        try:
            return load_safetensors(local, device=str(map_location or 'cpu'))
        except Exception as e:  # noqa: BLE001
            why = error_line(e, first=1, limit=200)
            raise CheckpointError(f'cannot read {local}: not a safetensors file ({why})') from None
    return load_file(local, map_location)
