"""Real processes: the tools, torchrun, signals, fresh interpreters (where the process is the point;
``tests.helpers.tool.tool`` runs a tool in the test process otherwise)."""
import os
import time

from tests.helpers import REPO


def subprocess_env(extra=None) -> dict:
    """The environment of the tools the tests start: ours, plus the repo root on the path so that test
    configs can import test helpers (tests.helpers.kill_hook), plus ``extra``."""
    path = os.pathsep.join(p for p in (REPO, os.environ.get('PYTHONPATH')) if p)
    return {**os.environ, 'PYTHONPATH': path, **(extra or {})}


def free_ports(n: int = 1) -> list:
    """``n`` distinct TCP ports free on 127.0.0.1 now, for torchrun's store (``PORT`` of tools/dist_train.sh):
    asked of the OS, not derived from the process id, so tests on two xdist workers never pick the same one."""
    import socket
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(('127.0.0.1', 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def signal_group_when(cmd, pattern: str, sig, env=None, terminal: bool = False):
    """Starts ``cmd`` (from the repo root) in its own process group, sends ``sig`` to the whole group once a
    line of its output matches ``pattern`` (or after 10 minutes), returns (exit code, output). ``terminal``:
    SIGINT at its default, as a terminal's foreground job has it."""
    import re
    import signal
    import subprocess
    preexec = (lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if terminal else None
    proc = subprocess.Popen(cmd, cwd=REPO, env=subprocess_env({'PYTHONUNBUFFERED': '1', **(env or {})}),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=preexec)
    lines = []
    try:
        deadline = time.time() + 600
        for line in proc.stdout:
            lines.append(line)
            if re.search(pattern, line) or time.time() > deadline:
                break
        os.killpg(proc.pid, sig)
        rest, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, ''.join(lines) + rest


def run(cmd, expect=0, env=None, timeout=900) -> str:
    """Runs a command in the repo root; asserts its exit code, returns stdout + stderr."""
    import subprocess
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=subprocess_env(env))
    out = r.stdout + r.stderr
    assert r.returncode == expect, f'exit {r.returncode} (expected {expect}):\n{out[-4000:]}'
    return out
