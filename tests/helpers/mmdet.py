"""The ``mmdet_registered`` fixture, shared by the detection tests of several folders (their conftests import
it)."""
import pytest


@pytest.fixture(scope='module')
def mmdet_registered():
    """mmdet's modules registered (the detection test modules use it autouse) and ours imported."""
    import mmdet.utils
    mmdet.utils.register_all_modules(init_default_scope=False)
    import backbones  # noqa: F401
