"""The Triton kernels (backbones/models/ops/triton_dwconv.py) through the GPU compiler, on a machine without a GPU.

Every kernel that ``inception_dw`` and its backward launch is compiled by Triton's own compiler, down to a cubin
by ptxas (shipped in the triton wheel), for sm_80 (A100) and sm_90 (H100 / H200), in each dtype the model
runs in (fp32, fp16, bf16, and the autocast mixes: fp32 input, fp16 / bf16 output), with the block sizes and
specialisations of the launches (``triton_dwconv.kernel_specs``). A kernel the compiler rejects fails the test;
registers and spills per thread are read from ptxas's report (``-v``) and printed
(``pytest -s``, or ``python tests/models/test_triton_compile.py`` for the table), and bounded: no spills, and at most
``MAX_REGS`` registers (8 warps x 128 registers = half an SM's register file: two programs per SM).
Controls: a kernel with an instruction ptxas rejects, and a real kernel squeezed into too few registers
(spills), are both caught. Triton caches compiled kernels (~/.triton/cache): a second run takes seconds.
"""
import os
import re
import subprocess
import sys
import tempfile

import pytest
import torch

pytestmark = pytest.mark.slow  # Triton + ptxas per kernel, dtype and arch: ~30 s warm, minutes with a cold cache

triton = pytest.importorskip('triton')
tl = pytest.importorskip('triton.language')
td = pytest.importorskip('backbones.models.ops.triton_dwconv')
if not td.AVAILABLE:
    pytest.skip('triton_dwconv unavailable (torch without triton_op)', allow_module_level=True)
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

BIN = os.path.join(os.path.dirname(triton.__file__), 'backends', 'nvidia', 'bin')
if not os.path.exists(os.path.join(BIN, 'ptxas')):
    pytest.skip('no ptxas in the triton wheel (not the NVIDIA backend)', allow_module_level=True)

MAX_REGS = 128
ARCHS = (80, 90)
DTYPES = {'fp32': (torch.float32, torch.float32), 'fp16': (torch.float16, torch.float16),
          'bf16': (torch.bfloat16, torch.bfloat16), 'amp-fp16': (torch.float32, torch.float16),
          'amp-bf16': (torch.float32, torch.bfloat16)}
# InceptionNeXt-T's stage 0 (96 channels, groups of 12: 16-channel blocks, 4-aligned) and stage 1 (192, 24:
# 32-channel blocks, 8-aligned); 3x3 square, 1x11 / 11x1 bands
SHAPES = {'stage0': (96, 12, 3, 11), 'stage1': (192, 24, 3, 11)}


def compile_kernel(fn, signature, constexprs, attrs, options, arch: int) -> dict:
    """Compiles one kernel for ``sm_<arch>`` (raises what the compiler raises); returns its registers and
    spill stores / loads per thread (bytes), from ptxas's report on the PTX with Triton's ptxas options,
    and the PTX."""
    kernel = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=GPUTarget('cuda', arch, 32),
                            options=options)
    ptx = kernel.asm['ptx']
    target = re.search(r'^\.target (sm_\w+)', ptx, re.M).group(1)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, 'k.ptx')
        with open(src, 'w') as f:
            f.write(ptx)
        log = subprocess.run([os.path.join(BIN, 'ptxas'), '-lineinfo', '-v', '--regAllocOptLevel=2',
                              f'--gpu-name={target}', src, '-o', os.path.join(tmp, 'k.cubin')],
                             capture_output=True, text=True, check=True).stderr
    regs = re.search(r'Used (\d+) registers', log)
    spills = re.search(r'(\d+) bytes spill stores, (\d+) bytes spill loads', log)
    assert regs and spills, log
    return dict(regs=int(regs.group(1)), spill=int(spills.group(1)) + int(spills.group(2)),
                shared=kernel.metadata.shared, ptx=ptx)


def problems(name: str, r: dict) -> list:
    bad = []
    if r['spill']:
        bad.append(f'{name}: {r["spill"]} bytes of spill stores + loads per thread')
    if r['regs'] > MAX_REGS:
        bad.append(f'{name}: {r["regs"]} registers > {MAX_REGS}')
    return bad


def _row(arch, dtype, shape, name, r):
    vec = sorted({m for m in re.findall(r'ld\.global(?:\.[a-z0-9]+)*', r['ptx']) if '.v' in m})
    return (f'sm_{arch} {dtype:8s} {shape:6s} {name:13s} regs {r["regs"]:3d}  spill {r["spill"]} B  '
            f'shared {r["shared"]:5d} B  vector loads: {", ".join(vec) or "none"}')


def _compile_all(arch, dtype, shape):
    c, g, ks, kb = SHAPES[shape]
    x_dtype, out_dtype = DTYPES[dtype]
    rows, bad = [], []
    for name, fn, sig, const, attrs, opts in td.kernel_specs(c, g, ks, kb, x_dtype, out_dtype):
        r = compile_kernel(fn, sig, const, attrs, opts, arch)
        rows.append(_row(arch, dtype, shape, name, r))
        bad += problems(f'sm_{arch} {dtype} {shape} {name}', r)
    return rows, bad


@pytest.mark.parametrize('arch', ARCHS, ids=[f'sm_{a}' for a in ARCHS])
@pytest.mark.parametrize('dtype', ['fp32', 'fp16', 'bf16'])
def test_kernels_compile(arch, dtype):
    rows, bad = _compile_all(arch, dtype, 'stage0')
    print('\n' + '\n'.join(rows))
    assert len(rows) == 4  # forward with / without statistics, the statistics merge, backward
    assert not bad, bad


@pytest.mark.parametrize('dtype', ['amp-fp16', 'amp-bf16'])
def test_autocast_dtypes_compile(dtype):
    """Autocast training (fp32 map, fp16 / bf16 mixer output) on sm_90, stage 0 and stage 1 (32-channel blocks,
    8-channel alignment)."""
    for shape in ('stage0', 'stage1'):
        rows, bad = _compile_all(90, dtype, shape)
        print('\n' + '\n'.join(rows))
        assert not bad, bad


FOLD_CASES = [(80, torch.float32), (90, torch.float32), (90, torch.float16), (90, torch.bfloat16)]


@pytest.mark.parametrize('arch,p_dtype', FOLD_CASES, ids=[f'sm_{a}-{str(d)[6:]}' for a, d in FOLD_CASES])
def test_fold_kernels_compile(arch, p_dtype):
    """The BN / layer-scale fold's three kernels (backbones/models/ops/triton_fold.py): forward, backward and its
    per-channel tail, parameters of each dtype the model trains in."""
    from backbones.models.ops import triton_fold
    rows, bad = [], []
    for name, fn, sig, const, attrs, opts in triton_fold.kernel_specs(p_dtype):
        r = compile_kernel(fn, sig, const, attrs, opts, arch)
        rows.append(_row(arch, str(p_dtype)[6:], 'fold', name, r))
        bad += problems(f'sm_{arch} {p_dtype} {name}', r)
        if not re.search(r'ld\.global(\.[a-z0-9]+)*\.v[24]', r['ptx']):  # rows of T's widths: vector loads
            bad.append(f'sm_{arch} {p_dtype} {name}: scalar loads only')
    print('\n' + '\n'.join(rows))
    assert len(rows) == 3 and not bad, bad


def test_vector_loads():
    """The channel blocks' alignment reaches the PTX: the forward and backward kernels load the map with
    vector instructions (2 or 4 x 32 bit: 2-8 channels), not one element per instruction; control: without
    the alignment (ALIGN=1) only scalar loads remain."""
    c, g, ks, kb = SHAPES['stage0']
    for name, fn, sig, const, attrs, opts in td.kernel_specs(c, g, ks, kb, torch.float32, torch.float32):
        if name != 'stats-merge':
            assert re.search(r'ld\.global(\.[a-z0-9]+)*\.v[24]', compile_kernel(fn, sig, const, attrs, opts, 90)['ptx'])
            if name == 'forward':
                ptx = compile_kernel(fn, sig, dict(const, ALIGN=1), attrs, opts, 90)['ptx']
                assert 'ld.global' in ptx and not re.search(r'ld\.global(\.[a-z0-9]+)*\.v[24]', ptx)


# --------------------------------------------------------------------------------------------------
# Controls: what the GPU compiler rejects, and spills, fail
# --------------------------------------------------------------------------------------------------
@triton.jit
def _rejected_by_ptxas(x_ptr, y_ptr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs)
    y = tl.inline_asm_elementwise('no.such.instruction.f32 $0, $1;', '=r,r', [x], dtype=tl.float32, is_pure=True,
                                  pack=1)
    tl.store(y_ptr + offs, y)



def test_control_compiler_rejection_fails():
    sig = {'x_ptr': '*fp32', 'y_ptr': '*fp32', 'BLOCK': 'constexpr'}
    with pytest.raises(Exception, match='(?i)ptxas|no.such.instruction'):
        compile_kernel(_rejected_by_ptxas, sig, {'BLOCK': 128}, {}, dict(num_warps=4), 90)


def test_control_spills_are_caught():
    """The real backward kernel limited to 40 registers per thread spills; the check reports it."""
    c, g, ks, kb = SHAPES['stage0']
    name, fn, sig, const, attrs, opts = td.kernel_specs(c, g, ks, kb, torch.float32, torch.float32)[-1]
    r = compile_kernel(fn, sig, const, attrs, dict(opts, maxnreg=40), 90)
    assert r['spill'] > 0 and problems(name, r), r['regs']


if __name__ == '__main__':  # the table: python tests/models/test_triton_compile.py
    for arch in ARCHS:
        for dtype in DTYPES:
            rows, bad = _compile_all(arch, dtype, 'stage0')
            print('\n'.join(rows + bad), flush=True)
    for dtype in ('amp-fp16', 'amp-bf16'):
        rows, bad = _compile_all(90, dtype, 'stage1')
        print('\n'.join(rows + bad), flush=True)
    from backbones.models.ops import triton_fold
    for arch, p_dtype in FOLD_CASES:
        for name, fn, sig, const, attrs, opts in triton_fold.kernel_specs(p_dtype):
            r = compile_kernel(fn, sig, const, attrs, opts, arch)
            print('\n'.join([_row(arch, str(p_dtype)[6:], 'fold', name, r)] + problems(name, r)), flush=True)
    sys.exit(0)
