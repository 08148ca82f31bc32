"""What starts the tools' processes; no user runs these directly.

- ``malloc_env.py``: the glibc malloc settings the tools re-execute themselves with, before torch is imported
  (``from launch import malloc_env`` in tools/train.py, tools/test.py, tools/analysis_tools/benchmark.py).
- ``dist_run.py``: torchrun for tools/dist_train.sh and tools/dist_test.sh, exiting with a failed process's code.

Both import nothing heavy (the standard library; dist_run.py torch), so neither imports ``backbones``.
"""
