import logging
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# torch's OpenMP threads spin-wait by default: 30-50x slower when another process holds a core.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import pytest  # noqa: E402
import torch  # noqa: E402

# Two cores: keep intra-op threads at the machine's size, and results deterministic per test.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def randomise_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BN statistics and affine terms and layer scales of ~0.75 (timm's or ours): so that
    eval-mode normalisation and folding are really compared, and the blocks' (1e-6-scaled) branches count."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
        if isinstance(getattr(m, 'gamma', None), torch.nn.Parameter):
            m.gamma.data.uniform_(0.5, 1.0)
    return model


def subprocess_env(extra=None) -> dict:
    """The environment of the tools the tests start: ours, plus the repo root on the path so that test
    configs can import test helpers (tests.kill_hook), plus ``extra``."""
    path = os.pathsep.join(p for p in (REPO, os.environ.get('PYTHONPATH')) if p)
    return {**os.environ, 'PYTHONPATH': path, **(extra or {})}


def run(cmd, expect=0, env=None, timeout=900) -> str:
    """Runs a command in the repo root; asserts its exit code, returns stdout + stderr."""
    import subprocess
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=subprocess_env(env))
    out = r.stdout + r.stderr
    assert r.returncode == expect, f'exit {r.returncode} (expected {expect}):\n{out[-4000:]}'
    return out


def single_torch_thread():
    """Fixture body (test modules wrap it, module-scoped and autouse): one torch thread. Small tensors gain
    nothing from a second thread, and on a busy 2-core machine OpenMP's barriers make 2 threads many times
    slower (measured: the accumulation test 0.7 s with 1 thread, 44 s with 2)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def mmdet_registered():
    """mmdet's modules registered (the detection test modules use it autouse) and ours imported."""
    import mmdet.utils
    mmdet.utils.register_all_modules(init_default_scope=False)
    import backbones  # noqa: F401


class LogCapture(logging.Handler):
    """What MMEngine's current logger prints (``print_log(..., logger='current')``), as ``text``; a context
    manager."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    @property
    def text(self) -> str:
        return '\n'.join(r.getMessage() for r in self.records)

    def warnings(self):
        return [r.getMessage() for r in self.records if r.levelno == logging.WARNING]

    def __enter__(self):
        from mmengine.logging import MMLogger
        self._logger = MMLogger.get_current_instance()
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self._logger.removeHandler(self)
