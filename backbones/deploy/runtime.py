"""ONNX Runtime (CPU): sessions, runs with one-line errors, the check of an exported file against the torch
model, and ``OrtModule`` (a torch-callable ONNX Runtime model, for ``tools/analysis_tools/benchmark.py``)."""
import copy
import os
import os.path as osp
import tempfile
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from backbones.deploy.export import MIN_SIZE, Exportable, export
from backbones.deploy.shims import prepare_for_export
from backbones.utils.errors import UserInputError
from backbones.utils.io import error_line


class ExportCheckError(UserInputError):
    """The ONNX Runtime output differs from torch's by more than the tolerance."""


def ort_session(path: str, threads: Optional[int] = None):
    """A CPU ``onnxruntime.InferenceSession`` on ``path``; ``threads`` intra-op threads (default: ORT's).
    Its threads do not spin-wait when ``OMP_WAIT_POLICY=PASSIVE`` (a shared machine)."""
    import onnxruntime as ort
    if not osp.isfile(path):
        raise UserInputError(f'ONNX file not found: {path}')
    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # errors reach the caller as exceptions (re-worded by ort_run)
    if threads:
        opts.intra_op_num_threads = threads
    if os.environ.get('OMP_WAIT_POLICY', '').upper() == 'PASSIVE':
        opts.add_session_config_entry('session.intra_op.allow_spinning', '0')
    try:
        return ort.InferenceSession(path, opts, providers=['CPUExecutionProvider'])
    except Exception as e:  # noqa: BLE001 -- ORT raises its own pybind types
        raise UserInputError(f'ONNX Runtime cannot load {path}: {error_line(e, 1, 600)}') from None


def ort_run(session, x, name: str = 'the ONNX model') -> list:
    """Runs the session on one input array (N, 3, H, W) float32; returns the list of outputs (numpy).

    A size the file cannot take (a static file fed another shape, a dynamic one less than 32 px) is a
    ``UserInputError`` naming the expected and given shapes (ONNX Runtime's own message is several lines).
    """
    import numpy as np
    x = np.ascontiguousarray(x, dtype=np.float32)
    inp = session.get_inputs()[0]
    if not all(isinstance(d, int) for d in inp.shape) and x.ndim == 4:
        try:
            low = int(session.get_modelmeta().custom_metadata_map.get('min_size', MIN_SIZE))
        except (ValueError, AttributeError):
            low = MIN_SIZE
        if min(x.shape[2:]) < low:
            raise UserInputError(f'{name} needs H and W of at least {low} px (min_size in its metadata), got '
                                 f'{tuple(x.shape)}: resize the image up')
    try:
        return session.run(None, {inp.name: x})
    except Exception as e:  # noqa: BLE001 -- onnxruntime's InvalidArgument / Fail / RuntimeException
        if all(isinstance(d, int) for d in inp.shape):
            raise UserInputError(f'{name} takes input of shape {tuple(inp.shape)} only, got '
                                 f'{tuple(x.shape)}: it was exported with a static shape (export with '
                                 '--dynamic for other sizes)') from None
        expected = '(' + ', '.join(str(d) for d in inp.shape) + f'), H, W >= {MIN_SIZE}'
        raise UserInputError(f'ONNX Runtime cannot run {name} on input {tuple(x.shape)} (it takes '
                             f'{expected}): {error_line(e, first=1, limit=600)}') from None


def other_sizes(shape: Tuple[int, int]) -> List[Tuple[int, int]]:
    """Two more sizes for checking a dynamic file: larger, and smaller-or-odd (not a multiple of 32)."""
    h, w = shape
    return [(h + 32, w + 64), (max(MIN_SIZE, h * 3 // 4 + 5), max(MIN_SIZE, w - w // 4 + 13))]


def check(exportable: Exportable, path: str, shapes: Sequence[Tuple[int, int]], batch: int = 1,
          tol: float = 1e-4, threads: Optional[int] = None, log=print, seed: int = 0) -> float:
    """Runs the file in ONNX Runtime (CPU) and the torch reference (the model as configured: no swapped
    modules, not folded) on the same random inputs, one per shape (the batch grows by one after the first
    shape, which a dynamic file must take too); returns the largest difference relative to the torch output's
    scale (max |torch|), raising ``ExportCheckError`` above ``tol``.

    For label outputs (``argmax``), a label may differ only where torch's logits of the two labels are
    within ``tol`` of each other (relative to the logits' scale).
    """
    session = ort_session(path, threads)
    dynamic_batch = not isinstance(session.get_inputs()[0].shape[0], int)
    module = exportable.reference
    threshold = getattr(module, 'threshold', 0.)
    g = torch.Generator().manual_seed(seed)
    worst = 0.
    for i, (h, w) in enumerate(shapes):
        n = batch + (1 if i and dynamic_batch else 0)
        x = torch.randn(n, 3, h, w, generator=g)
        outs = ort_run(session, x.numpy(), osp.basename(path))
        with torch.no_grad():
            ref = module(x)
        ref = list(ref) if isinstance(ref, (tuple, list)) else [ref]
        rel, note = 0., ''
        for name, r, o in zip(exportable.output_names, ref, outs):
            o = torch.from_numpy(o)
            scale = r.abs().max().item() or 1.  # an all-zero output: absolute differences
            if exportable.argmax:
                want = (r.argmax(1) if r.shape[1] > 1 else
                        (r.sigmoid() > threshold).long()[:, 0])
                if o.shape != want.shape:
                    raise ExportCheckError(f'{name}: ONNX output {tuple(o.shape)} vs torch '
                                           f'{tuple(want.shape)}')
                diff = o != want
                margin = 0.
                if diff.any() and r.shape[1] > 1:
                    picked = r.gather(1, o.unsqueeze(1).clamp(0, r.shape[1] - 1))[:, 0]
                    margin = (r.amax(1) - picked)[diff].max().item()
                elif diff.any():
                    margin = float('inf')
                rel = max(rel, margin / scale)
                note += f'{name}: {int(diff.sum())} of {diff.numel()} labels differ'
                note += f' (largest logit margin {margin:.2e}); ' if diff.any() else '; '
            else:
                if o.shape != r.shape:
                    raise ExportCheckError(f'{name}: ONNX output {tuple(o.shape)} vs torch {tuple(r.shape)}')
                d = (o - r).abs().max().item()
                d = d if d == d else float('inf')  # NaN (in either output) fails
                rel = max(rel, d / scale)
                note += f'{name} {tuple(r.shape)}: max |onnx - torch| {d:.2e} (scale {scale:.3g}); '
        ok = rel <= tol
        log(f'check {tuple(x.shape)}: {note}relative {rel:.2e} {"<=" if ok else ">"} {tol:g} '
            f'{"ok" if ok else "FAILED"}')
        if not ok:
            raise ExportCheckError(f'ONNX Runtime differs from torch at input {tuple(x.shape)}: relative '
                                   f'difference {rel:.2e} > {tol:g}')
        worst = max(worst, rel)
    return worst


# --------------------------------------------------------------------------------------------------
# A torch-callable ONNX Runtime model (tools/analysis_tools/benchmark.py)
# --------------------------------------------------------------------------------------------------
class OrtModule(nn.Module):
    """Runs a copy of ``module`` through ONNX Runtime (CPU): exported (static shape) on the first call with
    each input shape, to a temporary file; returns torch tensors. For timing next to the torch model."""

    def __init__(self, module: nn.Module, threads: Optional[int] = None):
        super().__init__()
        self.source = prepare_for_export(copy.deepcopy(module))
        self.threads = threads
        self._sessions = {}
        self._dir = tempfile.TemporaryDirectory(prefix='ort_')

    def forward(self, x: torch.Tensor):
        key = tuple(x.shape)
        if key not in self._sessions:
            path = osp.join(self._dir.name, f'model_{len(self._sessions)}.onnx')
            with torch.inference_mode(False):
                export(self.source, path, shape=key[2:], batch=key[0])
            self._sessions[key] = ort_session(path, self.threads or torch.get_num_threads())
        outs = ort_run(self._sessions[key], x.detach().cpu().numpy())
        return torch.from_numpy(outs[0]) if len(outs) == 1 else tuple(torch.from_numpy(o) for o in outs)

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError('an ONNX Runtime model is for inference only')
        return super().train(False)
