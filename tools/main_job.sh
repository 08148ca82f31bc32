#!/usr/bin/env bash
# The README's main job on its small embedded default. Needs the stack (bash tools/setup_env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
echo "== InceptionNeXt variants: params / MACs at 224 (mmengine.analysis) next to the published table"
$PY tools/flops.py
echo "== one forward of each variant on a 2x3x224x224 batch: the four stage maps"
$PY - <<'PY'
import torch
from backbones import InceptionNeXt
x = torch.randn(2, 3, 224, 224)
for arch in ('atto', 'tiny', 'small', 'base'):
    with torch.no_grad():
        feats = InceptionNeXt(arch).eval()(x)
    print(f'{arch:<6}', '  '.join(f's{4 * 2 ** i}:{tuple(f.shape)}' for i, f in enumerate(feats)))
PY
