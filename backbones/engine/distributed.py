"""Distributed and device set-up without a GPU: the gloo process group (torchrun, srun), DDP without
device ids, and SyncBN replaced by BN."""
import os

import torch
import torch.distributed as torch_dist
from mmengine.logging import print_log

from backbones.utils.errors import UserInputError


def setup_cpu_distributed(cfg) -> None:
    """Without CUDA: start the gloo process group (torchrun or srun env) and wrap DDP without device ids."""
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return
    if cfg.launcher == 'slurm':  # srun exports these; MASTER_PORT comes from tools/slurm_*.sh
        os.environ.setdefault('RANK', os.environ['SLURM_PROCID'])
        os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
        os.environ.setdefault('LOCAL_RANK', os.environ['SLURM_LOCALID'])
        if 'MASTER_ADDR' not in os.environ:
            os.environ['MASTER_ADDR'] = slurm_master_addr()
    if not torch_dist.is_initialized():
        start_process_group_or_fail()
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def slurm_master_addr() -> str:
    """The first host of the job's node list (``scontrol show hostnames $SLURM_NODELIST``), as MMEngine's
    slurm launcher derives it on GPU nodes."""
    import subprocess
    nodes = os.environ.get('SLURM_STEP_NODELIST') or os.environ.get('SLURM_NODELIST') or ''
    if not nodes:
        raise UserInputError('--launcher slurm: neither MASTER_ADDR nor SLURM_NODELIST is set (run under '
                             'srun, e.g. tools/slurm_train.sh, or export MASTER_ADDR)')
    try:
        out = subprocess.run(['scontrol', 'show', 'hostnames', nodes], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserInputError(f'--launcher slurm: cannot run "scontrol show hostnames {nodes}" to find '
                             f'MASTER_ADDR ({e}); export MASTER_ADDR') from None
    hosts = out.stdout.split()
    if out.returncode != 0 or not hosts:
        raise UserInputError(f'--launcher slurm: "scontrol show hostnames {nodes}" gave no host (exit '
                             f'{out.returncode}: {out.stderr.strip()[:200]}); export MASTER_ADDR')
    return hosts[0]


def start_process_group_or_fail() -> None:
    """``init_process_group('gloo')`` from the environment, but a group that does not form within
    ``DIST_START_TIMEOUT`` seconds (default 300) ends the process with one ``error:`` line and exit 2 instead
    of waiting for half an hour (gloo's default): a rank that never came, a wrong MASTER_ADDR / PORT, a
    restarted torchrun group that cannot re-form. The timeout of the collectives stays gloo's.

    A torchrun restart (``TORCHELASTIC_RESTART_COUNT`` > 0) keeps the agent's store, which still holds the
    first group's addresses under the same keys: a process of the new group could read a dead peer's address
    ("Gloo connectFullMesh failed ... Connection refused"). Each restart's group therefore gets its own key
    prefix; a group that fails to form all the same is one line too."""
    import sys
    import threading
    try:
        limit = float(os.environ.get('DIST_START_TIMEOUT', '300'))
    except ValueError:
        raise UserInputError(f'DIST_START_TIMEOUT={os.environ["DIST_START_TIMEOUT"]!r}: expected seconds'
                             ) from None
    rank, world = os.environ.get('RANK', '?'), os.environ.get('WORLD_SIZE', '?')
    restart = int(os.environ.get('TORCHELASTIC_RESTART_COUNT', '0') or 0)

    def give_up():
        where = f'{os.environ.get("MASTER_ADDR", "?")}:{os.environ.get("MASTER_PORT", "?")}'
        again = (f'; torchrun restart {restart}: the restarted group could not re-form; run the same '
                 'command again, it resumes from the last checkpoint') if restart else ''
        print(f'error: process {rank} of {world}: the process group did not form within {limit:g} s '
              f'(DIST_START_TIMEOUT) at {where}; a process missing, or another MASTER_ADDR / PORT{again}',
              file=sys.stderr, flush=True)
        os._exit(2)

    timer = threading.Timer(limit, give_up)
    timer.daemon = True
    timer.start()
    try:
        if restart:
            store, rank_, world_ = next(torch_dist.rendezvous('env://'))
            store = torch_dist.PrefixStore(f'inceptionnext/restart_{restart}', store)
            torch_dist.init_process_group(backend='gloo', store=store, rank=rank_, world_size=world_)
        else:
            torch_dist.init_process_group(backend='gloo')
    except RuntimeError as e:
        again = (f'; torchrun restart {restart}: the restarted group could not re-form; run the same command '
                 'again, it resumes from the last checkpoint') if restart else ''
        first = (str(e).strip().splitlines() or [''])[0][:300]
        raise UserInputError(f'process {rank} of {world}: the process group could not form ({first}){again}'
                             ) from None
    finally:
        timer.cancel()


def fallback_syncbn_on_cpu(cfg) -> int:
    """Replaces ``SyncBN`` by ``BN`` in ``cfg.model`` when no GPU is visible; returns how many."""
    if torch.cuda.is_available():
        return 0
    count = 0

    def walk(node):
        nonlocal count
        if isinstance(node, dict):
            if node.get('type') in ('SyncBN', 'MMSyncBN', 'TorchSyncBN'):
                node['type'] = 'BN'
                count += 1
            for v in node.values():
                walk(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v)

    walk(cfg.model)
    if cfg.get('sync_bn'):
        cfg.sync_bn = None
        count += 1
    if count:
        print_log(f'no GPU: {count} SyncBN setting(s) in the config replaced by BN (SyncBN needs CUDA)',
                  logger='current', level=30)
    return count
