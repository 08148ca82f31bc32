"""Small helpers shared across the package: a readable list of names, an exception's message as one line,
an atomic file write."""
import os
import os.path as osp
import tempfile
from typing import Callable, Iterable


def names(items: Iterable, n: int = 6, sep: str = ', ') -> str:
    """The first ``n`` items joined by ``sep``, then ``... (K in all)`` when there are more."""
    items = [str(i) for i in items]
    return sep.join(items[:n]) + (f' ... ({len(items)} in all)' if len(items) > n else '')


def error_line(e: BaseException, first: int = 0, limit: int = 0) -> str:
    """``e``'s message as one line (``run_cli`` prints one): its last non-empty line (where a dataloader
    worker's re-raised message puts the error), or with ``first=n`` its first ``n`` non-empty lines joined
    by spaces (where ONNX Runtime and torch.export put it); at most ``limit`` characters (0: all); the
    exception's type name when the message is empty."""
    lines = [s.strip() for s in str(e).strip().splitlines() if s.strip()]
    if not lines:
        return type(e).__name__
    text = ' '.join(lines[:first]) if first else lines[-1]
    return text[:limit] if limit else text


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_beside(path: str) -> str:
    """A new empty hidden file ``.NAME.*.part`` in ``path``'s folder (made if missing)."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(path) + '.', suffix='.part', dir=folder)
    os.close(fd)
    return tmp


def _commit(tmp: str, path: str) -> None:
    """The complete ``tmp`` takes ``path``'s name, with the mode a plain ``open()`` would give it (0666 minus
    the umask; ``mkstemp``'s 0600 would hide checkpoints from a shared group)."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def atomic_write(path: str, write: Callable) -> None:
    """Writes ``path`` so that it is either the old file or the complete new one, never a partial file.

    ``write(f)`` writes into a binary file object on a temporary file in the same folder, which is then
    fsync'ed and renamed over ``path`` (``atomic_write_path``). On any error (or an interrupt) the temporary
    file is removed and the error raised; a failed write (a full disk) as the ``OSError`` that caused it.
    """
    files = []

    def fill(tmp: str) -> None:
        files.append(_RecordingFile(open(tmp, 'wb')))
        with files[0] as f:
            write(f)
            f.flush()

    try:
        atomic_write_path(path, fill)
    except BaseException:
        if files and files[0].error is not None:  # torch.save reports a failed write as an opaque RuntimeError
            err = files[0].error
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise


def atomic_write_path(path: str, write: Callable[[str], None]) -> None:
    """The atomic write for writers that take a file name (an ONNX program's ``save``): ``write(tmp)`` fills
    a temporary file beside ``path``, which is then fsync'ed and renamed over ``path`` (``_commit``); on any
    error it is removed and the error raised."""
    path = str(path)
    tmp = _temp_beside(path)
    try:
        write(tmp)
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        _commit(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


class _RecordingFile:
    """A binary file that remembers the OSError of a failed write (a full disk), whatever its caller makes
    of it."""

    def __init__(self, f):
        self._f, self.error = f, None

    def write(self, data):
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self._f.close()
        except OSError as e:  # the buffered rest did not fit either
            self.error = self.error or e
            if exc[0] is None:
                raise

    def __getattr__(self, name):
        return getattr(self._f, name)


def atomic_save(obj, path: str) -> None:
    """``torch.save(obj, path)`` through ``atomic_write``."""
    import torch
    atomic_write(path, lambda f: torch.save(obj, f))


def refuse_output_over_input(out: str, inputs: dict, option: str = 'output', inside=()) -> None:
    """Raises ``UserInputError`` when the output ``out`` is, or resolves to (a link, ``..``, another
    spelling), one of the ``inputs`` (``{what: path}``; empty entries, URLs and ``backbone:<arch>`` are
    skipped): writing it would replace the user's file. ``inside``: file names the tool writes inside ``out``
    when it is a folder."""
    from backbones.utils.errors import UserInputError
    targets = [out] + [os.path.join(out, name) for name in inside]
    for what, path in inputs.items():
        if not path or '://' in str(path) or str(path).startswith('backbone:'):
            continue
        src = os.path.realpath(os.path.expanduser(str(path)))
        for target in targets:
            if os.path.realpath(os.path.expanduser(target)) == src:
                raise UserInputError(f'{option} {out} is the input {what} ({path}): writing it would replace '
                                     'the input; name another file')
