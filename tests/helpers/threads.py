"""torch's intra-op threads for test modules that run many small tensors."""
import torch


def single_torch_thread():
    """Fixture body (test modules wrap it, module-scoped and autouse): one torch thread. Small tensors gain
    nothing from a second thread, and on a busy 2-core machine OpenMP's barriers make 2 threads many times
    slower (measured: the accumulation test 0.7 s with 1 thread, 44 s with 2)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
