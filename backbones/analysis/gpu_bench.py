"""InceptionNeXt-T against its peers on a GPU: ``tools/analysis_tools/gpu_bench.sh`` runs these sections.

    python -m backbones.analysis.gpu_bench --section cls-eager --out DIR     # one section (appends DIR/rows.csv)
    python -m backbones.analysis.gpu_bench --report --out DIR                # DIR/gpu_bench.md, .csv, .png
    ... --smoke                                                              # the same code on CPU, tiny sizes

Sections (each in its own process, so that one failing or running out of time keeps the others' rows):
- ``cls-eager``: ours T (fast path, plain path, deploy form) against timm's inception_next_tiny, convnext_tiny
  and resnet50; inference and a train step (forward + backward + AdamW); fp32 and fp16 autocast; batch 128 at
  224, channels-last; the train step's peak memory (``torch.cuda.max_memory_allocated`` above what was
  allocated before the step).
- ``seg``: UperNet on our T (fast and plain) against UperNet on timm's ConvNeXt-T, the same head, at 512:
  inference (also the folded forms) and a train step, fp16 autocast and fp32, batch 16.
- ``cls-compiled``: the cls models under ``torch.compile`` (inductor, default mode; inference graphs frozen),
  fp16 autocast only (compilation takes most of the time), inference first.

Method: ``backbones.analysis.benchmark`` (warm-up, then timed runs interleaved across the models, median).
A model that fails to build or to run is reported as an error row and the others go on.
"""
import argparse
import copy
import csv
import os
import sys
import time
import traceback

import torch

from backbones.analysis.benchmark import (
    ModelTimer,
    bar_chart,
    build_model,
    describe_device,
    markdown,
    measure,
    seg_models,
)
from backbones.utils.cli import run_cli
from backbones.utils.errors import UserInputError

CLS = ['ours_tiny_fast', 'ours_tiny_nofast', 'ours_tiny_deploy', 'timm:inception_next_tiny', 'timm:convnext_tiny',
       'timm:resnet50']
REFS = {'cls-eager': 'timm:convnext_tiny', 'cls-compiled': 'timm:convnext_tiny+compile',
        'seg': 'upernet_timm_convnext_tiny'}
FIELDS = ['section', 'model', 'mode', 'precision', 'batch', 'size', 'best', 'peak_mib', 'error']


def settings(section: str, smoke: bool) -> dict:
    """What a section times: models, modes with batch sizes, precisions (autocast on/off), input size."""
    if section == 'cls-eager':
        s = dict(models=CLS, modes={'infer': 128, 'train': 128}, amp=[False, True], size=224)
    elif section == 'cls-compiled':
        models = CLS if not smoke else ['ours_tiny_fast']
        s = dict(models=[m + '+compile' for m in models], modes={'infer': 128, 'train': 128}, amp=[True], size=224)
    elif section == 'seg':
        s = dict(models=None, modes={'infer': 16, 'train': 16}, amp=[True, False], size=512)
    else:
        raise UserInputError(f'unknown section {section!r}: use cls-eager, cls-compiled or seg')
    s.update(warmup=3, iters=5, reps=5) if section != 'seg' else s.update(warmup=2, iters=3, reps=3)
    if smoke:  # the same code paths on CPU at tiny sizes (autocast only: it has the more branches)
        s.update(modes={m: 2 for m in s['modes']}, size=32, warmup=1, iters=1, reps=1, amp=[True])
    return s


def _build(section: str, s: dict, smoke: bool, log) -> dict:
    models = {}
    if section == 'seg':
        built = seg_models(s['size'])
        plain = copy.deepcopy(built['upernet_ours_tiny'])
        plain.model.backbone.set_fast_path(False)
        names = ['upernet_ours_tiny', 'upernet_ours_tiny_nofast', 'upernet_ours_tiny_deploy',
                 'upernet_timm_convnext_tiny', 'upernet_timm_convnext_tiny_fused']
        return {n: (plain if n == 'upernet_ours_tiny_nofast' else built[n]) for n in names}
    for name in s['models']:
        try:
            models[name] = build_model(name, compile_backend='eager' if smoke else 'inductor')
        except Exception:  # noqa: BLE001  (reported, the others go on)
            log(f'{name}: failed to build\n{traceback.format_exc()}')
            models[name] = None
    return models


def run_section(section: str, out: str, smoke: bool) -> int:
    device = torch.device('cpu' if smoke else 'cuda')
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
    s = settings(section, smoke)

    def log(msg):
        print(f'[{section} {time.strftime("%H:%M:%S")}] {msg}', flush=True)

    log(describe_device(device))
    torch.manual_seed(0)
    models = _build(section, s, smoke, log)
    path = os.path.join(out, 'rows.csv')
    new_file = not os.path.exists(path)
    failures = 0
    for mode, batch in s['modes'].items():
        for amp in s['amp']:
            precision = ('amp-fp16' if device.type == 'cuda' else 'amp-bf16') if amp else 'fp32'
            names = [n for n, m in models.items()
                     if mode == 'infer' or not any(k in n for k in ('_deploy', '_fused'))]
            runners, rows = {}, []
            for n in names:
                try:
                    if models[n] is None:
                        raise RuntimeError('not built')
                    r = ModelTimer(models[n], mode, batch, s['size'], device, True, amp)
                    for _ in range(s['warmup']):  # (compilation, cudnn.benchmark's search, Triton's JIT)
                        r.step()
                    runners[n] = r
                except Exception as e:  # noqa: BLE001
                    failures += 1
                    log(f'{n} {mode} {precision}: failed\n{traceback.format_exc()}')
                    rows.append(dict(model=n, error=f'{type(e).__name__}: {str(e).splitlines()[0][:200]}'))
            log(f'{mode} {precision} batch {batch} at {s["size"]}: timing {", ".join(runners)}')
            if device.type == 'cuda':
                torch.cuda.synchronize()
            rates = measure(runners, 0, s['iters'], s['reps'], log=log) if runners else {}
            for n, rate in rates.items():
                rows.append(dict(model=n, best=rate, peak_mib=getattr(runners[n], 'peak_mib', '')))
            with open(path, 'a', newline='') as f:  # after each group: a timeout keeps what is done
                w = csv.DictWriter(f, fieldnames=FIELDS)
                if new_file:
                    w.writeheader()
                    new_file = False
                for r in rows:
                    w.writerow({**dict(section=section, mode=mode, precision=precision, batch=batch, size=s['size'],
                                       peak_mib='', error=''), **r})
            del runners
            if device.type == 'cuda':
                torch.cuda.empty_cache()
    log(f'done ({failures} failures)')
    return 1 if failures else 0


def report(out: str) -> str:
    """DIR/gpu_bench.md (header, one table per section, the headline ratios), gpu_bench.csv, one png per
    section (gpu_bench.png: classification, eager and compiled)."""
    path = os.path.join(out, 'rows.csv')
    if not os.path.exists(path):
        raise UserInputError(f'no results in {out} (no section finished a group)')
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
    parts = ['# GPU benchmark: InceptionNeXt-T against its peers', '', header, '',
             'img/s, channels-last; "x ref" is relative to ConvNeXt-T in the same section, mode and precision; '
             'step peak MiB: `torch.cuda.max_memory_allocated` during the train step above what was allocated '
             'before it.', '']
    for section in ('cls-eager', 'cls-compiled', 'seg'):
        sel = [r for r in ok if r['section'] == section]
        if sel:
            parts += [f'## {section} (ref {REFS[section]})', '', markdown(sel, REFS[section]), '']
            bar_chart(sel, os.path.join(out, f'{section}.png'), REFS[section])
    # headline: ours T vs ConvNeXt-T
    lines = ['## ours T vs ConvNeXt-T (x ConvNeXt-T, same compile setting)', '',
             '| mode | precision | eager fast | eager plain | compiled fast | compiled plain |',
             '|---|---|---|---|---|---|']
    for mode in ('train', 'infer'):
        for prec in sorted({r['precision'] for r in ok}):
            cells = []
            for sec, suffix in (('cls-eager', ''), ('cls-eager', ''), ('cls-compiled', '+compile'),
                                ('cls-compiled', '+compile')):
                name = ('ours_tiny_fast' if len(cells) % 2 == 0 else 'ours_tiny_nofast') + suffix
                r = next((x for x in ok if x['section'] == sec and x['model'] == name and x['mode'] == mode
                          and x['precision'] == prec), None)
                cells.append(f"{r['ratio']:.2f}" if r else '-')
            lines.append(f'| {mode} | {prec} | ' + ' | '.join(cells) + ' |')
    parts += lines + ['']
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
    cls = [r for r in ok if r['section'].startswith('cls')]
    if cls:
        bar_chart(cls, os.path.join(out, 'gpu_bench.png'), REFS['cls-eager'])
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True)
    p.add_argument('--section', choices=['cls-eager', 'cls-compiled', 'seg'])
    p.add_argument('--report', action='store_true')
    p.add_argument('--header', action='store_true', help='write DIR/header.txt (device and versions)')
    p.add_argument('--smoke', action='store_true', help='CPU, tiny sizes, torch.compile with the eager backend')
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.header:
        device = torch.device('cpu' if args.smoke else 'cuda')
        text = f'{describe_device(device)}; python {sys.version.split()[0]}' + (
            '; SMOKE RUN (CPU, tiny sizes)' if args.smoke else '')
        with open(os.path.join(args.out, 'header.txt'), 'w') as f:
            f.write(text + '\n')
        print(text)
        return 0
    if args.report:
        print(report(args.out))
        return 0
    if not args.smoke and not torch.cuda.is_available():
        print('gpu_bench: no CUDA device (use --smoke for the CPU run)', file=sys.stderr)
        return 2
    return run_section(args.section, args.out, args.smoke)


if __name__ == '__main__':
    run_cli(main)
