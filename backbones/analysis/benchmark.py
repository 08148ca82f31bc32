"""Throughput of InceptionNeXt side by side with timm's models, in one process and one table.

    python tools/analysis_tools/benchmark.py        # tiny vs peers, CPU fp32, inference + train
    python tools/analysis_tools/benchmark.py --models ours_tiny ours_tiny_deploy timm:inception_next_tiny \
        timm:convnext_tiny timm:resnet50 --batch 32 --train-batch 16 --size 224 --reps 5 --ref timm:inception_next_tiny
    python tools/analysis_tools/benchmark.py --mode seg --size 512 --batch 2   # UperNet: ours-T vs ConvNeXt-T
    python tools/analysis_tools/benchmark.py ... --out-md table.md --out-csv table.csv --out-png bars.png

Model names: ``ours_<arch>`` (our backbone + MlpHead in eval mode), ``ours_<arch>_deploy`` (BN and layer
scale folded and, on CPU, oneDNN fused ops in cache-sized sub-batches: ``switch_to_deploy()``), its parts
``ours_<arch>_deploy-fold`` (folding only) and ``ours_<arch>_deploy-nochunk`` (no sub-batches),
``ours_<arch>_fast`` / ``ours_<arch>_nofast`` (the blocks' fast forms forced on / off, ``set_fast_path``;
plain ``ours_<arch>`` is the default, 'auto'), ``timm:<name>`` (built by timm, random weights, no hub), any
with ``+compile`` appended (torch.compile,
inductor, with ``freezing``: inference graphs get constant weights and convs fused with the pointwise ops
after them; the compile time falls in the warm-up), any of ours with ``ort:`` in front (ONNX Runtime on CPU,
inference only: the model exported by backbones/deploy/onnx.py at the timed shape, in the warm-up; ``--ort``
adds these rows for our models, in seg mode ``ort:upernet_ours_tiny``). Arches include the paper's ablation
rows as released (``convnext_tiny``, ``convnext_tiny_k5``, ``convnext_tiny_k3``, ``convnext_tiny_k3_par1_8``
...) and the BN variants of the same sizes (``metanext_bn_tiny_k7`` ...).

Method (speed differs between machines and between fresh processes, so claims are ratios measured here):
each model is warmed up, then the timed runs are interleaved across models (model A, B, C, A, B, C ...)
and the median per model is reported, for both memory formats (channels-first / channels-last); the
better one is the model's figure, both are printed. Train = forward + backward + AdamW step (under fp16
autocast with a ``GradScaler``). On CUDA, TF32 is set alike for matmuls and convolutions (``set_tf32``;
``--tf32`` of the tool, default on).
``--gemm`` also times fp32 GEMM (``torch.mm``, and the same product as a 1x1 conv) and prints each model's
inference FLOP rate as a fraction of both. The tool runs with glibc malloc keeping freed memory
(tools/launch/malloc_env.py); ``INCEPTIONNEXT_MALLOC=default`` measures glibc's defaults.
"""
import csv
import os
import statistics
import time

import torch

from backbones.utils.errors import UserInputError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout (configs/)


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------
# The spelling of a model name, outermost first: ``ort:`` in front, ``+compile`` behind, then ``timm:<name>``
# or ``ours_<arch>`` with at most one suffix of each table below, in this order:
# ``ours_<arch>[_fast][_deploy]``.
COMPILE_SUFFIX = '+compile'
FAST_SUFFIXES = {'_fast': True, '_nofast': False}  # set_fast_path (none: 'auto')
# switch_to_deploy: (oneDNN fused CPU kernels, cache-sized sub-batches)
DEPLOY_SUFFIXES = {'_deploy': (True, True), '_deploy-fold': (False, True), '_deploy-nochunk': (True, False)}


def _split_suffix(name: str, table: dict):
    """``name`` without the suffix of ``table`` it ends with, and that suffix's value (None: none)."""
    for suffix in sorted(table, key=len, reverse=True):
        if name.endswith(suffix):
            return name[:-len(suffix)], table[suffix]
    return name, None


def build_model(name: str, num_classes: int = 1000, compile_backend: str = 'inductor') -> torch.nn.Module:
    """The model a benchmark name spells (the module doc and the suffix tables above), in eval mode."""
    if name.startswith('ort:'):
        from backbones.deploy.onnx import OrtModule
        return OrtModule(build_model(name[len('ort:'):], num_classes))
    base, compiled = _split_suffix(name, {COMPILE_SUFFIX: True})
    if base.startswith('timm:'):
        import timm
        timm_name = base[len('timm:'):]
        if not timm.is_model(timm_name):
            raise UserInputError(f'unknown model {name!r}: timm has no {timm_name!r}')
        model = timm.create_model(timm_name, pretrained=False, num_classes=num_classes)
    elif base.startswith('ours_'):
        from backbones.apis.build import classifier
        from backbones.models.ops.onednn import CPU_CHUNK_BYTES
        arch, deploy = _split_suffix(base[len('ours_'):], DEPLOY_SUFFIXES)
        if '_deploy' in arch:
            raise UserInputError(f'unknown deploy variant in {name!r}: use {", ".join(DEPLOY_SUFFIXES)}')
        arch, fast = _split_suffix(arch, FAST_SUFFIXES)
        try:
            model = classifier(arch, num_classes)
        except ValueError as e:
            raise UserInputError(f'model {name!r}: {e}') from None
        model.backbone.set_fast_path('auto' if fast is None else fast)
        if deploy is not None:
            cpu_kernels, chunked = deploy
            model.backbone.switch_to_deploy(cpu_kernels=cpu_kernels,
                                            chunk_bytes=CPU_CHUNK_BYTES if chunked else 0)
    else:
        raise UserInputError(f'unknown model {name!r}: use ours_<arch>[_deploy] or timm:<name>')
    model.eval()
    if compiled:
        import torch._inductor.config
        torch._inductor.config.freezing = True  # inference graphs only; training graphs are not frozen
        model = torch.compile(model, backend=compile_backend)
    return model


def seg_models(size: int, ort: bool = False) -> dict:
    """UperNet (mmseg) on our InceptionNeXt-T and on timm's ConvNeXt-T features, same head settings, each
    also in its inference form (``_deploy`` / ``_fused``); ``ort``: ours in ONNX Runtime too."""
    import copy

    from mmcv.cnn import fuse_conv_bn

    from backbones.analysis.flops import DenseTensorForward
    from backbones.apis.build import build_model as build_from_config
    from backbones.utils.config import load_config
    ours = load_config(os.path.join(REPO, 'configs', 'upernet_inceptionnext_t.py'))
    convnext = copy.deepcopy(ours)
    convnext.model.backbone = dict(type='mmseg.TIMMBackbone', model_name='convnext_tiny', features_only=True,
                                   pretrained=False, out_indices=(0, 1, 2, 3))
    out = {}
    for key, cfg in (('upernet_ours_tiny', ours), ('upernet_timm_convnext_tiny', convnext)):
        out[key] = DenseTensorForward(build_from_config(cfg))
        # inference forms: the heads' BN folded into their convs (mmcv's fuse_conv_bn, as
        # mmseg's --fuse-conv-bn), and for ours the backbone's switch_to_deploy
        fused = build_from_config(cfg)
        fused.load_state_dict(out[key].model.state_dict())
        for head in (fused.decode_head, getattr(fused, 'auxiliary_head', None)):
            if head is not None:
                fuse_conv_bn(head)
        if key == 'upernet_ours_tiny':
            fused.backbone.switch_to_deploy()
        out[key + ('_deploy' if key == 'upernet_ours_tiny' else '_fused')] = DenseTensorForward(fused)
    if ort:
        from backbones.deploy.onnx import OrtModule
        out['ort:upernet_ours_tiny'] = OrtModule(out['upernet_ours_tiny'])
    return out


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------
def describe_device(device) -> str:
    """One line: torch and, on CUDA, the GPU, CUDA / cuDNN versions and the TF32 and cudnn.benchmark settings."""
    line = f'torch {torch.__version__}'
    if device.type == 'cuda':
        line += (f', {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}, cuDNN '
                 f'{torch.backends.cudnn.version()}, TF32 matmul {torch.backends.cuda.matmul.allow_tf32} / '
                 f'cudnn {torch.backends.cudnn.allow_tf32}, cudnn.benchmark {torch.backends.cudnn.benchmark}')
    return line


def set_tf32(enabled: bool) -> None:
    """TF32 for fp32 matmuls (Linear layers) and cuDNN convolutions alike. PyTorch's defaults differ (convs
    TF32, matmuls not), which times a model of Linear layers (ConvNeXt) in full fp32 beside TF32 convs."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


class ModelTimer:
    """One timed unit of work (inference or a train step) for one model, memory format and precision."""

    def __init__(self, model, mode, batch, size, device, channels_last, amp):
        self.model, self.mode, self.device, self.amp = model.to(device), mode, device, amp
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=fmt)
        self.x = torch.randn(batch, 3, size, size, device=device).to(memory_format=fmt)
        self.batch = batch
        if mode == 'train':
            self.model.train()
            self.target = torch.randint(0, 10, (batch,), device=device)
            self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-6)
            # fp16 autocast trains with loss scaling (as mmengine's AmpOptimWrapper and timm do): its unscale,
            # inf check and update are part of the step's cost; bf16 (CPU) needs none
            self.scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == 'cuda')
        else:
            self.model.eval()

    def step(self):
        ctx = torch.autocast(self.device.type, dtype=torch.float16 if self.device.type == 'cuda' else torch.bfloat16,
                             enabled=self.amp)
        if self.mode == 'infer':
            with torch.inference_mode(), ctx:
                self.model(self.x)
        else:
            with ctx:
                out = self.model(self.x)
                out = out if torch.is_tensor(out) else out[0]
                loss = torch.nn.functional.cross_entropy(out.flatten(2).mean(2) if out.dim() == 4 else out,
                                                         self.target % out.shape[1])
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            self.opt.zero_grad(set_to_none=True)

    def time(self, iters):
        _sync(self.device)
        if self.device.type == 'cuda':  # the step's peak above what was allocated before it (MiB)
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(iters):
            self.step()
        _sync(self.device)
        rate = self.batch * iters / (time.perf_counter() - t0)
        if self.device.type == 'cuda':
            self.peak_mib = max(getattr(self, 'peak_mib', 0.0), (torch.cuda.max_memory_allocated() - base) / 2 ** 20)
        return rate


def measure(runners: dict, warmup: int, iters: int, reps: int, log=print) -> dict:
    """Interleaved timing: returns name -> median img/s over ``reps`` rounds."""
    for name, r in runners.items():
        for _ in range(warmup):
            r.step()
    rates = {name: [] for name in runners}
    for rep in range(reps):
        for name, r in runners.items():
            rates[name].append(r.time(iters))
        log(f'  round {rep + 1}/{reps}: ' + ', '.join(f'{n} {_rate(v[-1])}' for n, v in rates.items()))
    return {name: statistics.median(v) for name, v in rates.items()}


def _best_rate(fn, flops: float, device, reps: int) -> float:
    fn()
    rates = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(3):
            fn()
        _sync(device)
        rates.append(3 * flops / (time.perf_counter() - t0))
    return max(rates)


def gemm_rates(device, n: int = 2048, reps: int = 5) -> dict:
    """The machine's fp32 GEMM FLOP/s, best of ``reps`` (so fractions of it are conservative):
    ``torch.mm`` of n x n matrices (BLAS: MKL on x86 CPUs), and a (4096 x 1024) @ (1024 x 1024) product
    as a channels-last 1x1 convolution (cuDNN / oneDNN, what the models' convs run on; on AMD CPUs
    MKL takes its AVX2 path while oneDNN uses AVX-512)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    x = torch.randn(64, 1024, 8, 8, device=device).contiguous(memory_format=torch.channels_last)
    w = torch.randn(1024, 1024, 1, 1, device=device)
    with torch.inference_mode():
        return {'mm': _best_rate(lambda: torch.mm(a, b), 2 * n ** 3, device, reps),
                'conv1x1': _best_rate(lambda: torch.nn.functional.conv2d(x, w), 2 * 4096 * 1024 ** 2, device, reps)}


# --------------------------------------------------------------------------------------------------
def run_benchmark(args) -> list:
    device = torch.device(args.device)
    amp_options = [False] + ([True] if args.amp else [])
    amp_name = 'amp-fp16' if device.type == 'cuda' else 'amp-bf16'
    if args.mode == 'seg':
        models = seg_models(args.size, args.ort)
        names = list(models)
    else:
        names = args.models + [f'ort:{n}' for n in args.models if args.ort and n.startswith('ours_')
                               and not n.endswith('+compile')]
        models = {n: build_model(n) for n in names}
    macs = {}
    if args.gemm:
        from backbones.analysis.flops import count
        for n in names:
            base = models[n]._orig_mod if hasattr(models[n], '_orig_mod') else models[n]
            base = getattr(base, 'source', base)  # ort: count the exported torch model
            macs[n] = count(base, torch.zeros(1, 3, args.size, args.size))[1]
    rows = []
    for mode, batch in (('infer', args.batch), ('train', args.train_batch)):
        if mode not in args.measure:
            continue
        # deploy form and ONNX Runtime: inference only
        active = [n for n in names if mode == 'infer' or ('_deploy' not in n and not n.startswith('ort:'))]
        for amp in amp_options:
            results, peaks = {}, {}
            for cl in (False, True):
                print(f'{mode} batch {batch} at {args.size}, {amp_name if amp else "fp32"}, '
                      f'{"channels-last" if cl else "channels-first"}:', flush=True)
                runners = {n: ModelTimer(models[n], mode, batch, args.size, device, cl, amp) for n in active}
                results[cl] = measure(runners, args.warmup, args.iters, args.reps)
                peaks[cl] = {n: getattr(r, 'peak_mib', None) for n, r in runners.items()}
                del runners
            for n in active:
                cf, cl = results[False][n], results[True][n]
                rows.append(dict(model=n, mode=mode, precision=amp_name if amp else 'fp32', batch=batch,
                                 size=args.size, channels_first=cf, channels_last=cl, best=max(cf, cl)))
                if device.type == 'cuda':
                    rows[-1]['peak_mib'] = peaks[cf < cl][n]  # of the better memory format
    ref = args.ref or names[0]
    for r in rows:
        peer = next((x for x in rows if x['model'] == ref and x['mode'] == r['mode']
                     and x['precision'] == r['precision']), None)
        r['ratio'] = r['best'] / peer['best'] if peer else float('nan')
    if args.gemm:
        rates = gemm_rates(device)
        print(f'fp32 GEMM rate on {device}: torch.mm {rates["mm"] / 1e9:.1f} GFLOP/s, '
              f'as a 1x1 conv {rates["conv1x1"] / 1e9:.1f} GFLOP/s')
        for r in rows:
            if r['mode'] == 'infer' and r['model'] in macs:
                r['gemm_fraction'] = 2 * macs[r['model']] * r['best'] / rates['mm']
                r['conv_gemm_fraction'] = 2 * macs[r['model']] * r['best'] / rates['conv1x1']
    return rows


def _rate(v: float) -> str:
    if v != v:
        return '-'  # not measured
    return f'{v:.1f}' if v >= 10 else f'{v:.3g}'  # 3 digits also for slow models (UperNet at 512: ~1 img/s)


def markdown(rows, ref) -> str:
    gemm = any('gemm_fraction' in r for r in rows)
    peak = any(r.get('peak_mib') is not None for r in rows)
    head = ('| model | mode | prec | batch | size | ch-first img/s | ch-last img/s | best | x ' + ref + ' |'
            + (' of mm GEMM | of conv GEMM |' if gemm else '') + (' step peak MiB |' if peak else ''))
    lines = [head, '|' + '---|' * (head.count('|') - 1)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['mode']} | {r['precision']} | {r['batch']} | {r['size']} | "
                     f"{_rate(r['channels_first'])} | {_rate(r['channels_last'])} | {_rate(r['best'])} | "
                     f"{r['ratio']:.2f} |"
                     + (f" {r['gemm_fraction']:.0%} | {r['conv_gemm_fraction']:.0%} |" if 'gemm_fraction' in r
                        else (' | |' if gemm else ''))
                     + ((f" {r['peak_mib']:.0f} |" if r.get('peak_mib') is not None else ' |') if peak else ''))
    return '\n'.join(lines)


def bar_chart(rows, path, ref):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    groups = sorted({(r['mode'], r['precision']) for r in rows})
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 0.5 * len(rows) + 2), squeeze=False)
    for ax, (mode, prec) in zip(axes[0], groups):
        sel = [r for r in rows if r['mode'] == mode and r['precision'] == prec]
        ax.barh([r['model'] for r in sel], [r['best'] for r in sel],
                color=['tab:orange' if r['model'] == ref else 'tab:blue' for r in sel])
        for i, r in enumerate(sel):
            ax.text(r['best'], i, f" {_rate(r['best'])} ({r['ratio']:.2f}x)", va='center', fontsize=8)
        ax.set(title=f'{mode} {prec}, batch {sel[0]["batch"]} @ {sel[0]["size"]}', xlabel='images / s')
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_csv(rows, path: str) -> None:
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        w.writeheader()
        w.writerows(rows)
