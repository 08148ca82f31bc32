"""The GPU comparison in one command: ``tools/analysis_tools/gpu_bench.sh`` runs the sections of ``PLAN``.

    python -m backbones.analysis.gpu_bench --dry-run [--seg]                 # the plan and its time budget
    python -m backbones.analysis.gpu_bench --section train-eager --out DIR   # one section (appends DIR/rows.csv)
    python -m backbones.analysis.gpu_bench --report --out DIR                # DIR/gpu_bench.md, .csv, .png
    ... --smoke                                                              # the same code on CPU, tiny sizes

The plan fits 8 minutes on one H100 / H200 (``BUDGET_S``): each section runs in its own process under its
time limit, train rows first (the train step is the question: does the fast path pay?), then inference;
every row is appended to DIR/rows.csv (flushed) as soon as it is measured, so a section that runs out of
time keeps its finished rows and the others still run. Rows, in order:
- ``train-eager``: ours T with the fast path (``fast_path=True``: BN folded into fc1, the Triton token mixer)
  and plain, timm's inception_next_tiny, convnext_tiny, resnet50; the train step (forward, backward, AdamW;
  fp16 autocast with a ``GradScaler``), fp16 autocast then fp32; batch 128 at 224, channels-last; peak memory.
- ``train-compiled``: ours fast and plain and ConvNeXt-T under ``torch.compile`` (inductor, default mode),
  fp16 autocast: each row a cold compile (~1 min, estimated), so three rows.
- ``infer-eager``: the same models and the deploy form, inference, fp16 autocast then fp32.
- ``infer-compiled``: the deploy form and ConvNeXt-T compiled (inference graphs frozen), fp16 autocast.
- ``seg`` (only with ``--seg``; beyond the 8 minutes): UperNet on ours (fast, plain, deploy) against UperNet on
  timm's ConvNeXt-T at 512, batch 16, fp16 autocast.
fp32 runs with TF32 set alike for matmuls (Linear) and cuDNN (convolutions) (``--tf32``, default on: the
precision reads 'fp32-tf32'); otherwise ConvNeXt's Linear layers would run full fp32 beside TF32 convs.

Method: ``backbones.analysis.benchmark`` (``ModelTimer``): per row a warm-up (compilation, cudnn.benchmark's
search, Triton's JIT and the fast path's self-test), then ``reps`` timed runs of ``iters`` steps, median.
A model that fails to build or to run is an error row and the others go on. The time estimates are not
measured on a GPU yet (``EST_S``); the sections' limits hold the total either way.
"""
import argparse
import copy
import csv
import os
import sys
import time
import traceback
from typing import NamedTuple

import torch

from backbones.analysis.benchmark import (
    ModelTimer,
    bar_chart,
    build_model,
    describe_device,
    markdown,
    measure,
    set_tf32,
)
from backbones.utils.cli import run_cli
from backbones.utils.errors import UserInputError

OURS = ['ours_tiny_fast', 'ours_tiny_nofast']
PEERS = ['timm:inception_next_tiny', 'timm:convnext_tiny', 'timm:resnet50']
REFS = {'train-eager': 'timm:convnext_tiny', 'train-compiled': 'timm:convnext_tiny+compile',
        'infer-eager': 'timm:convnext_tiny', 'infer-compiled': 'timm:convnext_tiny+compile',
        'seg': 'upernet_timm_convnext_tiny'}
FIELDS = ['section', 'model', 'mode', 'precision', 'batch', 'size', 'best', 'peak_mib', 'error']
BUDGET_S = 480  # 8 minutes on one GPU, all sections with the header and the report
OVERHEAD_S = 20  # the header and the report (two python starts)
STARTUP_S = 15  # a section's process: imports, model builds, CUDA context
# Estimated seconds per row (warm-up and timing; compiled: a cold inductor compile of forward (+ backward)).
EST_S = {('eager', 'train'): 5, ('eager', 'infer'): 3, ('compiled', 'train'): 60, ('compiled', 'infer'): 35,
         ('seg', 'train'): 6, ('seg', 'infer'): 4}


class Group(NamedTuple):
    mode: str  # 'train' / 'infer'
    amp: bool  # fp16 autocast, else fp32
    models: tuple
    batch: int


class Section(NamedTuple):
    name: str
    limit_s: int
    kind: str  # 'eager' / 'compiled' / 'seg'
    groups: tuple
    size: int = 224


DEPLOYED = ('ours_tiny_deploy', 'ours_tiny_fast_deploy')  # the folded form: plain ops / Triton mixer
PLAN = (
    Section('train-eager', 75, 'eager', (Group('train', True, (*OURS, *PEERS), 128),
                                         Group('train', False, (*OURS, *PEERS), 128))),
    Section('train-compiled', 200, 'compiled', (Group('train', True, tuple(
        m + '+compile' for m in (*OURS, 'timm:convnext_tiny')), 128),)),
    Section('infer-eager', 60, 'eager', tuple(Group('infer', amp, (*OURS, *DEPLOYED, *PEERS), 128)
                                              for amp in (True, False))),
    Section('infer-compiled', 85, 'compiled', (Group('infer', True, (
        'ours_tiny_deploy+compile', 'timm:convnext_tiny+compile'), 128),)),
)
SEG = Section('seg', 60, 'seg', (
    Group('train', True, ('upernet_ours_tiny', 'upernet_ours_tiny_nofast', 'upernet_timm_convnext_tiny'), 16),
    Group('infer', True, ('upernet_ours_tiny', 'upernet_ours_tiny_nofast', 'upernet_ours_tiny_deploy',
                          'upernet_timm_convnext_tiny', 'upernet_timm_convnext_tiny_fused'), 16)), size=512)


def plan(seg: bool = False, models=None) -> tuple:
    """The sections to run; ``models``: keep only these rows (names as in the plan), drop emptied sections."""
    sections = PLAN + ((SEG,) if seg else ())
    if models is None:
        return sections
    out = []
    for s in sections:
        groups = tuple(g._replace(models=tuple(m for m in g.models if m in models)) for g in s.groups)
        groups = tuple(g for g in groups if g.models)
        if groups:
            out.append(s._replace(groups=groups))
    return tuple(out)


def section_estimate(s: Section) -> int:
    return STARTUP_S + sum(EST_S[(s.kind, g.mode)] * len(g.models) for g in s.groups)


def check_plan(sections) -> list:
    """What is wrong with a plan: a train row after an inference row, fp32 before fp16 autocast within a
    section, a section whose estimate exceeds its limit, limits beyond the budget (seg excepted: opt-in)."""
    bad, seen_infer = [], False
    for s in sections:
        for g in s.groups:
            if g.mode == 'infer':
                seen_infer = True
            elif seen_infer and s.kind != 'seg':
                bad.append(f'{s.name}: train rows after inference rows')
        amps = [g.amp for g in s.groups]
        if any(not a and b for a, b in zip(amps, amps[1:])) and len({g.mode for g in s.groups}) == 1:
            bad.append(f'{s.name}: fp32 before fp16 autocast')
        if section_estimate(s) > s.limit_s:
            bad.append(f'{s.name}: estimated {section_estimate(s)} s > its limit {s.limit_s} s')
    total = OVERHEAD_S + sum(s.limit_s for s in sections if s.kind != 'seg')
    if total > BUDGET_S:
        bad.append(f'total {total} s > budget {BUDGET_S} s')
    return bad


def plan_text(seg: bool = False, models=None) -> str:
    """The plan, row by row, with each section's estimate against its limit and the total against BUDGET_S."""
    lines, total = [], OVERHEAD_S
    for s in plan(seg, models):
        total += s.limit_s
        lines.append(f'{s.name}: limit {s.limit_s} s, estimated {section_estimate(s)} s (start-up {STARTUP_S} s)')
        for g in s.groups:
            prec = 'amp-fp16' if g.amp else 'fp32'
            for m in g.models:
                lines.append(f'  {g.mode:5s} {prec:8s} batch {g.batch:3d} at {s.size}  {m}  '
                             f'(~{EST_S[(s.kind, g.mode)]} s)')
    lines.append(f'total: {total} s of section limits and overhead ({OVERHEAD_S} s), budget {BUDGET_S} s'
                 + (' (--seg: beyond the 8-minute budget)' if seg else ''))
    lines += [f'PLAN PROBLEM: {b}' for b in check_plan(plan(seg, models))]
    return '\n'.join(lines)


def _smoke(s: Section) -> Section:
    """The same code paths on CPU at tiny sizes: batch 2 at 32 (64 for UperNet), one warm-up step."""
    return s._replace(groups=tuple(g._replace(batch=2) for g in s.groups), size=64 if s.kind == 'seg' else 32)


def _build(name: str, s: Section, smoke: bool, cache: dict):
    """The model of a row, built once per section (the fp16 and fp32 groups time the same model; a compiled
    model keeps its compiled graphs)."""
    if name not in cache:
        if s.kind == 'seg':
            from backbones.analysis.benchmark import seg_models
            built = seg_models(s.size)
            plain = copy.deepcopy(built['upernet_ours_tiny'])
            plain.model.backbone.set_fast_path(False)
            built['upernet_ours_tiny'].model.backbone.set_fast_path(True)
            cache.update(built, upernet_ours_tiny_nofast=plain)
        else:
            cache[name] = build_model(name, compile_backend='eager' if smoke else 'inductor')
    return cache[name]


def run_section(name: str, out: str, smoke: bool, tf32: bool, models=None) -> int:
    device = torch.device('cpu' if smoke else 'cuda')
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
        set_tf32(tf32)
    s = next((x for x in plan(True, models) if x.name == name), None)
    if s is None:
        raise UserInputError(f'section {name!r} has no rows to run (unknown, or none of --models in it)')
    s = _smoke(s) if smoke else s
    warmup, iters, reps = (1, 1, 1) if smoke else ((2, 3, 3) if s.kind != 'eager' else (3, 5, 5))

    def log(msg):
        print(f'[{name} {time.strftime("%H:%M:%S")}] {msg}', flush=True)

    log(describe_device(device))
    path = os.path.join(out, 'rows.csv')
    failures, cache = 0, {}
    with open(path, 'a', newline='') as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if f.tell() == 0:
            w.writeheader()
        for g in s.groups:
            precision = (('amp-fp16' if device.type == 'cuda' else 'amp-bf16') if g.amp
                         else ('fp32-tf32' if tf32 and device.type == 'cuda' else 'fp32'))
            for model_name in g.models:
                torch.manual_seed(0)
                row = dict(section=name, model=model_name, mode=g.mode, precision=precision, batch=g.batch,
                           size=s.size, best='', peak_mib='', error='')
                t0 = time.perf_counter()
                try:
                    model = _build(model_name, s, smoke, cache)
                    runner = ModelTimer(model, g.mode, g.batch, s.size, device, True, g.amp)
                    rate = measure({model_name: runner}, warmup, iters, reps, log=log)[model_name]
                    row.update(best=rate, peak_mib=getattr(runner, 'peak_mib', ''))
                except Exception as e:  # noqa: BLE001  (an error row; the others go on)
                    failures += 1
                    log(f'{model_name} {g.mode} {precision}: failed\n{traceback.format_exc()}')
                    row['error'] = f'{type(e).__name__}: {(str(e).strip().splitlines() or [""])[0][:200]}'
                w.writerow(row)
                f.flush()
                os.fsync(f.fileno())
                log(f'{g.mode} {precision} {model_name}: {row["best"] or row["error"]} '
                    f'({time.perf_counter() - t0:.0f} s)')
                runner = None
                if device.type == 'cuda':
                    torch.cuda.empty_cache()
    log(f'done ({failures} failures)')
    return 1 if failures else 0


def report(out: str, seg: bool = False, models=None) -> str:
    """DIR/gpu_bench.md (header, one table per section, the headline ratios, rows planned but not measured,
    errors), gpu_bench.csv, one png per section and gpu_bench.png (classification)."""
    path = os.path.join(out, 'rows.csv')
    if not os.path.exists(path):
        raise UserInputError(f'no results in {out} (no section finished a row)')
    with open(path) as f:
        rows = list(csv.DictReader(f))
    ok = [r for r in rows if not r['error']]
    for r in ok:
        r['best'] = float(r['best'])
        r['peak_mib'] = float(r['peak_mib']) if r['peak_mib'] else None
        r['channels_first'] = float('nan')  # channels-last only here
        r['channels_last'] = r['best']
    for r in ok:
        ref = next((x for x in ok if x['section'] == r['section'] and x['model'] == REFS[r['section']]
                    and x['mode'] == r['mode'] and x['precision'] == r['precision']), None)
        r['ratio'] = r['best'] / ref['best'] if ref else float('nan')
    header = open(os.path.join(out, 'header.txt')).read().strip() if os.path.exists(
        os.path.join(out, 'header.txt')) else ''
    parts = ['# GPU benchmark', '', header, '',
             'img/s, channels-last; "x ref" is relative to ConvNeXt-T in the same section, mode and precision; '
             'step peak MiB: `torch.cuda.max_memory_allocated` during the timed steps above what was allocated '
             'before them. fp32-tf32: TF32 for matmuls and convolutions alike.', '']
    for s in plan(seg=True):
        sel = [r for r in ok if r['section'] == s.name]
        if sel:
            parts += [f'## {s.name} (ref {REFS[s.name]})', '', markdown(sel, REFS[s.name]), '']
            bar_chart(sel, os.path.join(out, f'{s.name}.png'), REFS[s.name])
    lines = ['## ours T vs ConvNeXt-T (x ConvNeXt-T of the same section)', '',
             '| mode | precision | eager fast | eager plain | compiled fast | compiled plain |',
             '|---|---|---|---|---|---|']
    for mode in ('train', 'infer'):
        for prec in sorted({r['precision'] for r in ok}):
            cells = []
            for name in ('ours_tiny_fast', 'ours_tiny_nofast', 'ours_tiny_fast+compile', 'ours_tiny_nofast+compile'):
                sec = f'{mode}-{"compiled" if name.endswith("+compile") else "eager"}'
                r = next((x for x in ok if x['section'] == sec and x['model'] == name and x['precision'] == prec),
                         None)
                cells.append(f"{r['ratio']:.2f}" if r else '-')
            lines.append(f'| {mode} | {prec} | ' + ' | '.join(cells) + ' |')
    parts += lines + ['']
    done = {(r['section'], r['model'], r['mode']) for r in rows}
    missing = [f'- {s.name} {g.mode} {m}' for s in plan(seg, models) for g in s.groups for m in g.models
               if (s.name, m, g.mode) not in done]
    if missing:
        parts += ['## planned, not measured (time limit or crash: see the section logs)', ''] + missing + ['']
    errors = [r for r in rows if r['error']]
    if errors:
        parts += ['## errors', ''] + [f"- {r['section']} {r['model']} {r['mode']} {r['precision']}: {r['error']}"
                                      for r in errors] + ['']
    text = '\n'.join(parts)
    with open(os.path.join(out, 'gpu_bench.md'), 'w') as f:
        f.write(text)
    with open(os.path.join(out, 'gpu_bench.csv'), 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=FIELDS + ['ratio'], extrasaction='ignore')
        w.writeheader()
        w.writerows(rows)
    cls = [r for r in ok if r['section'] != 'seg']
    if cls:
        bar_chart(cls, os.path.join(out, 'gpu_bench.png'), REFS['train-eager'])
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out')
    p.add_argument('--section', choices=[s.name for s in plan(seg=True)])
    p.add_argument('--sections', action='store_true', help='print the sections to run, "name limit_s" per line')
    p.add_argument('--dry-run', action='store_true', help='print the plan and its time budget')
    p.add_argument('--seg', action='store_true', help='add the UperNet section (beyond the 8-minute budget)')
    p.add_argument('--report', action='store_true')
    p.add_argument('--header', action='store_true', help='write DIR/header.txt (device and versions)')
    p.add_argument('--tf32', choices=['on', 'off'], default='on',
                   help='TF32 for matmuls and cuDNN alike in the fp32 rows (default on)')
    p.add_argument('--smoke', action='store_true', help='CPU, tiny sizes, torch.compile with the eager backend')
    p.add_argument('--models', help='comma-separated: run only these rows of the plan (names as --dry-run prints)')
    args = p.parse_args(argv)
    models = None
    if args.models:
        models = [m.strip() for m in args.models.split(',') if m.strip()]
        known = {m for s in plan(True) for g in s.groups for m in g.models}
        unknown = [m for m in models if m not in known]
        if unknown:
            raise UserInputError(f'gpu_bench: --models {",".join(unknown)}: not in the plan (see --dry-run)')
    if args.dry_run:
        text = plan_text(args.seg, models)
        print(text)
        return 1 if 'PLAN PROBLEM' in text else 0
    if args.sections:
        print('\n'.join(f'{s.name} {s.limit_s}' for s in plan(args.seg, models)))
        return 0
    if not args.out:
        p.error('--out is required')
    os.makedirs(args.out, exist_ok=True)
    if args.header:
        device = torch.device('cpu' if args.smoke else 'cuda')
        if device.type == 'cuda':
            torch.backends.cudnn.benchmark = True
            set_tf32(args.tf32 == 'on')
        text = f'{describe_device(device)}; python {sys.version.split()[0]}' + (
            '; SMOKE RUN (CPU, tiny sizes)' if args.smoke else '')
        with open(os.path.join(args.out, 'header.txt'), 'w') as f:
            f.write(text + '\n')
        print(text)
        return 0
    if args.report:
        print(report(args.out, args.seg, models))
        return 0
    if not args.smoke and not torch.cuda.is_available():
        print('error: gpu_bench: no CUDA device (use --smoke for the CPU run)', file=sys.stderr)
        return 2
    if not args.section:
        p.error('--section, --report, --header, --sections or --dry-run')
    return run_section(args.section, args.out, args.smoke, args.tf32 == 'on', models)


if __name__ == '__main__':
    run_cli(main)
