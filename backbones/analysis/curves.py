"""Loss and metric curves of a work dir, as a PNG (``tools/analysis_tools/plot_logs.py``).

Reads every run (``<timestamp>/vis_data/scalars.json``, written by MMEngine's LocalVisBackend) in the
work dir in time order, so a resumed run continues its curve. Left panel: the losses over iterations;
right panel: the evaluation metrics (mIoU, bbox_mAP, top-1 ...) at the steps they were computed.
"""
import glob
import json
import os
import os.path as osp

from backbones.utils.errors import UserInputError

# Logged scalars that are neither losses nor metrics.
_NOT_METRICS = {'step', 'iter', 'epoch', 'lr', 'base_lr', 'time', 'data_time', 'memory'}


def read_scalars(work_dir: str):
    """(train records, eval records) of all runs in ``work_dir``, each a list of dicts with 'step'."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not files:
        raise UserInputError(f'no */vis_data/scalars.json under {work_dir}: not a tools/train.py work dir?')
    train, evals = {}, {}
    for path in files:  # later runs (a resume) overwrite the steps they repeat
        with open(path) as f:
            lines = f.read().splitlines()
        for i, line in enumerate(lines):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                if i == len(lines) - 1:  # a run still writing (or killed mid-write): a partial last line
                    continue
                raise UserInputError(f'{path}:{i + 1}: not a JSON record ({e.msg})') from None
            if not isinstance(rec, dict) or 'step' not in rec:
                raise UserInputError(f'{path}:{i + 1}: not a scalars record of MMEngine (no "step")')
            target = train if any('loss' in k for k in rec) else evals
            target[rec['step']] = rec
    return [train[s] for s in sorted(train)], [evals[s] for s in sorted(evals)]


def plot(work_dir: str, out: str) -> str:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    train, evals = read_scalars(work_dir)
    fig, (ax_l, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
    loss_keys = sorted({k for r in train for k in r if 'loss' in k})
    for k in loss_keys:
        pts = [(r['step'], r[k]) for r in train if k in r]
        ax_l.plot(*zip(*pts), label=k, lw=2 if k == 'loss' else 1)
    ax_l.set(title='training losses', xlabel='iteration', ylabel='loss')
    ax_l.legend(fontsize=8)
    ax_l.grid(alpha=.3)
    metric_keys = sorted({k for r in evals for k in r if k not in _NOT_METRICS})
    for k in metric_keys:
        pts = [(r['step'], r[k]) for r in evals if isinstance(r.get(k), (int, float))]
        if pts:
            ax_m.plot(*zip(*pts), marker='o', label=k)
    ax_m.set(title='evaluation', xlabel='iteration (or epoch)', ylabel='metric')
    if metric_keys:
        ax_m.legend(fontsize=8)
    ax_m.grid(alpha=.3)
    fig.suptitle(osp.basename(osp.normpath(work_dir)))
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
