"""File writes (backbones/utils/io.py)."""
import os


def test_atomic_writes_honour_the_umask(tmp_path):
    """Checkpoints get the mode a plain open() gives (0666 minus the umask), not mkstemp's 0600: a shared
    cluster group must be able to read them."""
    from backbones.utils.io import atomic_write
    old = os.umask(0o022)
    try:
        atomic_write(str(tmp_path / 'a.pth'), lambda f: f.write(b'x'))
        os.umask(0o002)
        atomic_write(str(tmp_path / 'b.pth'), lambda f: f.write(b'x'))
    finally:
        os.umask(old)
    assert oct(os.stat(tmp_path / 'a.pth').st_mode & 0o777) == '0o644'
    assert oct(os.stat(tmp_path / 'b.pth').st_mode & 0o777) == '0o664'
