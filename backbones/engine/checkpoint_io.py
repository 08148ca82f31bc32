"""Checkpoint I/O for MMEngine: its local and ``http(s)://`` checkpoint loaders through the suite's one
safe reader, with plain data rebuilt (``plain_data.from_plain``) before MMEngine or any hook reads it, and a
local file backend whose writes are atomic. ``install_mmengine_fixes`` (``backbones.engine.mmengine_fixes``)
registers them."""
from mmengine.fileio.backends import LocalBackend

from backbones.engine.plain_data import from_plain
from backbones.utils.io import atomic_write


def _read(filename, map_location):
    """A checkpoint (path or URL) through the one safe reader, its plain data rebuilt."""
    from backbones.models.weights import read_checkpoint
    return from_plain(read_checkpoint(filename, map_location=map_location))


def load_local_checkpoint(filename, map_location):
    """MMEngine's local loader, reading through the suite's one safe reader (``models.weights.load_file``):
    torch's weights_only unpickler with MMEngine's ``HistoryBuffer`` and numpy values allowed, so a training
    checkpoint (``--resume``, ``load_from``, ``tools/test.py``, mmseg's / mmdet's tools on our configs) is
    read, and a file that names anything else is refused with one line, never unpickled in full."""
    return _read(filename, map_location)


def load_url_checkpoint(filename, map_location, model_dir=None, progress=True):
    """MMEngine's ``http(s)://`` loader, the suite's way: downloaded once into ``$TORCH_HOME/hub/checkpoints``
    (MMEngine's own cache folder), its hash checked where the name carries one, read safely; offline or a bad
    URL is one line naming the URL and the path to copy the file to. (MMEngine's own unpickles in full.)"""
    return _read(filename, map_location)


class AtomicLocalBackend(LocalBackend):
    """MMEngine's local file backend, but a write never leaves a partial file under the final name."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(str(filepath), lambda f: f.write(obj))

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)
