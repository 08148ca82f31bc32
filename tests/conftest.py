import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)  # tools/ is a folder of scripts, importable from the tests

# torch's OpenMP threads spin-wait by default: 30-50x slower when another process holds a core.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import torch  # noqa: E402

# Two cores: keep intra-op threads at the machine's size, and results deterministic per test.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
