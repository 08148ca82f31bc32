"""Fixtures of the hook tests."""
import pytest

from backbones.datasets.synthetic import write_ade
from tests.helpers.seg_runs import BASE, CONFIG


@pytest.fixture(scope='module')
def configs(tmp_path_factory):
    d = tmp_path_factory.mktemp('div')
    root = str(d / 'ade')
    write_ade(root, num_train=8, num_val=2, size=(64, 64), seed=4)

    def make(name, **kw):
        opts = dict(workers=0, iters=8, ckpt=1)
        opts.update(kw)
        path = str(d / f'{name}.py')
        with open(path, 'w') as f:
            f.write(CONFIG.format(base=BASE, root=root, **opts))
        return path
    return make
