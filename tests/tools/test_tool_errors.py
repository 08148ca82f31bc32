"""Every tool under tools/ answers bad input as a new user meets it: exit 2, exactly one ``error:`` line on
stderr (argparse's own ``prog: error: ...`` counts), no traceback.

The tools are found by listing tools/, so a new tool without cases here fails ``test_every_tool_has_cases``.
Python tools run in this process through their ``main(argv)`` and ``run_cli`` (what their ``__main__`` block
calls, which ``test_python_tools_end_in_run_cli`` checks): a subprocess costs seconds of imports each. The
shell wrappers run as real subprocesses, started together; two of them go on to tools/train.py.
"""
import ast
import os
import os.path as osp
import re
import stat
import subprocess
import sys

import pytest
import torch

from tests.helpers import REPO
from tests.helpers.processes import free_ports, subprocess_env
from tests.helpers.tool import TOOLS, run_in_process

SEG = 'configs/upernet_inceptionnext-atto_1xb8-160k_synthetic-ade-128x128.py'
DET = 'configs/mask-rcnn_inceptionnext-atto_fpn_500iter_synthetic-coco.py'
CLS = 'configs/inceptionnext-atto_4xb320-600e_in1k.py'

# Files under tools/ that are not commands: what the tools import, the setup's own steps.
NOT_TOOLS = {'launch/malloc_env.py': 'imported by the tools (glibc settings), not run',
             'launch/__init__.py': "the tools' launch helpers (a package, so that the tools import from it)",
             'setup_env.sh': 'takes no arguments; run with any, it sets the stack up (minutes)',
             'setup/mmcv_ops.py': "setup_env.sh's step on the unpacked mmcv sdist before the build (not a user tool)",
             'setup/mmcv_ops.txt': 'the op list tools/setup/mmcv_ops.py reads'}

# {tool: [(argv, what the error line must contain)]}. Paths in argv: {tmp} is a fresh folder holding
# garbage.pth (text, not a checkpoint), atto.pth (InceptionNeXt-atto backbone weights), text.txt, empty/.
IN_PROCESS = {
    'train.py': [
        (['nope.py'], 'config file not found: nope.py'),
        ([SEG, '--cfg-options', 'model.backbone.archh=atto'], "unknown config key 'model.backbone.archh'"),
        ([SEG, '--cfg-options', 'train_dataloader.batch_size=two'], 'the config has a number there'),
        ([SEG, '--cfg-options', 'model.backbone.arch'], "'model.backbone.arch': expected key=value"),
        ([SEG, '--launcher', 'mpi'], "invalid choice: 'mpi'"),
        ([SEG, '--cfg-options', 'model.backbone.arch=tinyy'], 'model.backbone.arch'),
        ([SEG, '--resume', '{tmp}/missing.pth'], 'missing.pth'),
        ([SEG, '--resume', '{tmp}/garbage.pth'], 'garbage.pth'),
        *([([SEG, '--amp'], '--amp needs a GPU')] if not torch.cuda.is_available() else []),
        ([CLS, '--cfg-options', 'optim_wrapper.paramwise_cfg=5'], 'optim_wrapper.paramwise_cfg'),
    ],
    'test.py': [
        (['nope.py', 'x.pth'], 'config file not found: nope.py'),
        ([SEG, '{tmp}/missing.pth'], 'missing.pth'),
        ([SEG, '{tmp}/garbage.pth'], 'garbage.pth'),
        ([SEG, '{tmp}/atto.pth', '--launcher', 'x'], "invalid choice: 'x'"),
    ],
    'analysis_tools/benchmark.py': [
        (['--models', 'foo'], "unknown model 'foo'"),
        (['--models', 'ours_nope'], "'ours_nope'"),
        (['--models', 'timm:nope_net'], "timm has no 'nope_net'"),
        (['--models', 'ours_atto_deploy-x'], 'unknown deploy variant'),
        (['--mode', 'det'], "invalid choice: 'det'"),
        (['--batch', 'x'], "invalid int value: 'x'"),
    ],
    'analysis_tools/benchmark_data.py': [
        (['nope.py', '--generate'], 'config file not found: nope.py'),
        ([SEG, '--images', '0'], '--images must be at least 1'),
        ([SEG, '--data-root', '{tmp}/none'], 'none/images/training: No such file or directory'),
        ([SEG, '--data-root', '{tmp}', '--generate'], 'not allowed with argument'),
    ],
    'analysis_tools/flops.py': [
        (['--arch', 'nope'], "'nope'"),
        (['nope.py'], 'config file not found: nope.py'),
        (['--shape', 'x'], "invalid int value: 'x'"),
        ([SEG, '--cfg-options', 'model.nope=1'], 'unrecognized arguments: --cfg-options'),
    ],
    'analysis_tools/flops_det.py': [
        (['nope.py'], 'config file not found: nope.py'),
        ([SEG], 'not an mmdet config'),
        (['--shape', '1333'], 'expected 2 arguments'),
    ],
    'analysis_tools/plot_logs.py': [
        (['{tmp}/missing'], 'missing'),
        (['{tmp}/empty'], 'scalars.json'),
        (['{tmp}/badlog'], 'scalars.json:2: not a JSON record'),
    ],
    'deployment/export_onnx.py': [
        (['nope.py', '--out', '{tmp}/m.onnx'], 'config file not found: nope.py'),
        (['backbone:nope', '--out', '{tmp}/m.onnx'], "'nope'"),
        (['backbone:atto', '{tmp}/missing.pth', '--out', '{tmp}/m.onnx'], 'missing.pth'),
        (['backbone:atto', '--out', '{tmp}/m.onnx', '--batch', '0'], '--batch 0'),
        (['backbone:atto', '--out', '{tmp}/none.onnx', '--check-only'], 'none.onnx'),
        (['backbone:atto'], 'the following arguments are required: --out'),
    ],
    'misc/check_data.py': [
        ([], 'give a CONFIG or --coco ANN_FILE'),
        (['nope.py'], 'config file not found: nope.py'),
        (['--coco', '{tmp}/missing.json'], 'missing.json'),
        (['--coco', '{tmp}/text.txt'], 'text.txt'),
        ([SEG, '--splits', 'foo'], "invalid choice: 'foo'"),
        ([SEG, '--cfg-options', 'train_dataloader.dataset.data_root={tmp}/missing'], 'missing'),
    ],
    'misc/demo_seg.py': [
        (['{tmp}/missing.jpg', SEG, '{tmp}/atto.pth'], 'missing.jpg'),
        (['{tmp}/text.txt', SEG, '{tmp}/atto.pth'], 'text.txt'),
        (['{tmp}/image.png', 'nope.py', '{tmp}/atto.pth'], 'nope.py'),
        (['{tmp}/image.png', SEG, '{tmp}/garbage.pth'], 'garbage.pth'),
        (['{tmp}/image.png', SEG, '{tmp}/atto.pth'], 'atto.pth was saved by a different model'),
        (['{tmp}/image.png', DET, '{tmp}/atto.pth'], 'not a segmentation config'),
        (['{tmp}/image.png', SEG, '{tmp}/atto.pth', '--opacity', 'half'], "invalid float value: 'half'"),
    ],
    'misc/download_weights.py': [
        ([], 'name the models (or arches) whose weights to fetch, or pass --all'),
        (['nope'], "unknown model 'nope'"),
        (['atto', '--to', '{tmp}/garbage.pth'], 'garbage.pth'),
    ],
    'misc/demo_det.py': [
        (['{tmp}/missing.jpg', DET, '{tmp}/atto.pth'], 'missing.jpg'),
        (['{tmp}/image.png', SEG, '{tmp}/atto.pth'], 'not a detection config'),
        (['{tmp}/image.png', DET, '{tmp}/garbage.pth'], 'garbage.pth'),
        (['{tmp}/image.png', DET, '{tmp}/atto.pth', '--cfg-options', 'model.nope=1'], "'model.nope'"),
    ],
    'misc/synthetic_data.py': [
        (['coco', '{tmp}/d', '--classes', '9'], '--classes 9'),
        (['ade', '{tmp}/d', '--size', '64'], '--size 64'),
        (['imagenet', '{tmp}/d', '--classes', '1'], '--classes 1'),
        (['ade', '{tmp}/d', '--train', '-1'], '--train -1'),
        (['voc', '{tmp}/d'], "invalid choice: 'voc'"),
        (['ade', '{tmp}/text.txt/d'], 'text.txt'),
    ],
    'analysis_tools/confusion_matrix.py': [
        ([SEG, '{tmp}/missing.pkl', '{tmp}/cm'], '{tmp}/missing.pkl: no such file or folder'),
        ([SEG, '{tmp}/garbage.pth', '{tmp}/cm'], '{tmp}/garbage.pth: not a readable predictions file'),
        # (a data root of the test's own: the checkout's data/synthetic_ade exists after tools/main_job.sh)
        ([SEG, '{tmp}', '{tmp}/cm', '--cfg-options', 'test_dataloader.dataset.data_root={tmp}/no_data'],
         '{tmp}/no_data/images/validation: No such file or directory'),
        (['nope.py', '{tmp}/garbage.pth', '{tmp}/cm'], 'nope.py'),
    ],
    'model_converters/convert_weights.py': [
        (['{tmp}/missing.pth', '{tmp}/out.pth'], 'missing.pth'),
        (['{tmp}/garbage.pth', '{tmp}/out.pth'],
         'cannot read checkpoint {tmp}/garbage.pth: not a PyTorch checkpoint'),
        (['{tmp}/atto.pth', '{tmp}/out.pth', '--arch', 'nope'], "'nope'"),
        (['{tmp}/atto.pth', '{tmp}/empty'], 'empty'),
    ],
    'model_converters/publish_model.py': [
        (['{tmp}/missing.pth', '{tmp}/out.pth'], 'checkpoint file not found: {tmp}/missing.pth'),
        (['{tmp}/garbage.pth', '{tmp}/out.pth'],
         'cannot read checkpoint {tmp}/garbage.pth: not a PyTorch checkpoint'),
        (['{tmp}/atto.pth'], 'out_file'),
    ],
    'model_converters/extract_backbone.py': [
        (['{tmp}/missing.pth', '{tmp}/out.pth'], 'missing.pth'),
        (['{tmp}/garbage.pth', '{tmp}/out.pth'], 'garbage.pth'),
        (['{tmp}/atto.pth', '{tmp}/out.pth', '--arch', 'nope'], "'nope'"),
        (['{tmp}/atto.pth', '{tmp}/out.pth', '--arch', 'tiny'], 'tiny'),
    ],
}

# Python tools whose __main__ is ``sys.exit(main())``, not run_cli: the torchrun launcher imports only torch
# (it starts every distributed run) and prints its own error line.
LIGHT = {'launch/dist_run.py': [
    (['--nnodes', 'two', 'tools/train.py'], 'torchrun cannot start the processes'),
    (['--no-such-option', 'tools/train.py'], 'unrecognized arguments'),
]}

# Run as real subprocesses, all at once: the shell wrappers, with what they pass on. Two go on to a Python
# tool (train.py through torchrun, and through srun, faked here: it runs the command it is given), which
# also exercises a tool's __main__ block for real (glibc re-exec, imports, run_cli); the others stop in bash.
SUBPROCESS = {
    'dist_train.sh': [([], 'CONFIG and GPUS'), (['cfg.py', 'two'], "GPUS must be a positive number"),
                      (['nope.py', '1'], 'config file not found: nope.py')],
    'dist_test.sh': [([], 'CONFIG, CHECKPOINT and GPUS'),
                     (['cfg.py', 'x.pth', '0'], 'GPUS must be a positive')],
    'slurm_train.sh': [([], 'PARTITION, JOB_NAME and CONFIG'),
                       (['p', 'job', 'nope.py'], 'config file not found')],
    'slurm_test.sh': [([], 'PARTITION, JOB_NAME, CONFIG and CHECKPOINT')],
    'main_job.sh': [(['--iters', '10'], 'takes no arguments')],
    'analysis_tools/gpu_bench.sh': [(['--bogus'], "unknown argument '--bogus'")],
}


def tool_files():
    """Every file under tools/, relative to it."""
    out = []
    for root, _, files in os.walk(TOOLS):
        for f in files:
            if not f.endswith('.pyc'):
                out.append(osp.relpath(osp.join(root, f), TOOLS))
    return sorted(out)


def error_lines(text: str):
    """The lines that report an error: ``error: ...`` (run_cli, the wrappers) or ``prog: error: ...``."""
    return [line for line in text.splitlines() if re.match(r'(\S+: )?error: ', line)]


def check_answer(where: str, code, err: str, want: str) -> None:
    errors, tail = error_lines(err), '\n    '.join(err.strip().splitlines()[-4:])
    assert 'Traceback' not in err, f'{where}: a traceback, ending\n    {tail}'
    assert code == 2, f'{where}: exit {code} (expected 2), stderr ending\n    {tail}'
    assert len(errors) == 1, f'{where}: {len(errors)} error lines (expected 1), stderr ending\n    {tail}'
    assert want in errors[0], f'{where}: the error line does not name {want!r}: {errors[0]}'


def test_fast_path_variable_is_one_line(monkeypatch):
    """A bad $INCEPTIONNEXT_FAST, read when a tool builds a model: one line naming it."""
    monkeypatch.setenv('INCEPTIONNEXT_FAST', 'maybe')
    monkeypatch.syspath_prepend(TOOLS)
    code, err = run_in_process('analysis_tools/flops.py', ['--arch', 'atto'])
    check_answer('INCEPTIONNEXT_FAST=maybe tools/analysis_tools/flops.py --arch atto', code, err,
                 "INCEPTIONNEXT_FAST='maybe': use 0, 1 or auto")


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    """The files the cases name."""
    import cv2
    import numpy as np

    from backbones import InceptionNeXt
    tmp = tmp_path_factory.mktemp('inputs')
    (tmp / 'garbage.pth').write_text('not a checkpoint\n')
    (tmp / 'text.txt').write_text('some text\n')
    (tmp / 'empty').mkdir()
    log = tmp / 'badlog' / '20240101_000000' / 'vis_data'
    log.mkdir(parents=True)
    (log / 'scalars.json').write_text('{"loss": 1.0, "step": 1}\n{"loss": \n{"loss": 0.9, "step": 2}\n')
    torch.manual_seed(0)
    torch.save(InceptionNeXt('atto').state_dict(), tmp / 'atto.pth')
    cv2.imwrite(str(tmp / 'image.png'), np.full((32, 48, 3), 128, np.uint8))
    return str(tmp)



def test_every_tool_has_cases():
    """A tool added to tools/ without cases here (or a case for a tool that is gone) fails."""
    covered = set(IN_PROCESS) | set(LIGHT) | set(SUBPROCESS) | set(NOT_TOOLS)
    files = set(tool_files())
    assert files - covered == set(), f'tools without bad-argument cases here: {sorted(files - covered)}'
    assert covered - files == set(), f'cases for tools that do not exist: {sorted(covered - files)}'
    assert all(t.endswith('.py') for t in [*IN_PROCESS, *LIGHT])
    assert all(t.endswith('.sh') for t in SUBPROCESS)


@pytest.mark.parametrize('rel', sorted([*IN_PROCESS, *LIGHT]))
def test_python_tools_end_in_run_cli(rel):
    """The ``__main__`` block of each Python tool hands its ``main`` to ``run_cli`` (``sys.exit`` for the
    LIGHT ones): what the in-process cases run."""
    tree = ast.parse(open(osp.join(TOOLS, rel)).read())
    main_blocks = [n for n in tree.body
                   if isinstance(n, ast.If) and ast.unparse(n.test) == "__name__ == '__main__'"]
    want = 'sys.exit(main())' if rel in LIGHT else 'run_cli(main)'
    assert main_blocks and ast.unparse(main_blocks[-1].body[-1]) == want, rel


@pytest.mark.parametrize('rel', sorted([*IN_PROCESS, *LIGHT]))
def test_python_tool_refuses_bad_input(rel, inputs, monkeypatch):
    monkeypatch.syspath_prepend(TOOLS)  # tools import tools/launch/malloc_env.py
    monkeypatch.chdir(REPO)
    monkeypatch.delenv('LOCAL_RANK', raising=False)
    failures = []
    for argv, want in {**IN_PROCESS, **LIGHT}[rel]:
        argv = [a.format(tmp=inputs) for a in argv]
        code, err = run_in_process(rel, argv, light=rel in LIGHT)
        try:
            check_answer(f'tools/{rel} {" ".join(argv)}', code, err, want.format(tmp=inputs))
        except AssertionError as e:
            failures.append(str(e))
    if failures:
        pytest.fail('\n\n'.join(failures), pytrace=False)


def test_shell_wrappers(tmp_path):
    """The subprocess cases, all started at once."""
    fake = tmp_path / 'bin'
    fake.mkdir()
    srun = fake / 'srun'
    srun.write_text('#!/usr/bin/env bash\n# srun OPTIONS... $PYTHON ARGS...: runs $PYTHON ARGS... here\n'
                    'while [ $# -gt 0 ] && [ "$1" != "$PYTHON" ]; do shift; done\nexec "$@"\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    env = subprocess_env({'PATH': f'{fake}{os.pathsep}{os.environ["PATH"]}', 'PYTHON': sys.executable,
                          'GPUS': '1', 'GPUS_PER_NODE': '1'})
    jobs = []
    ports = iter(free_ports(sum(len(c) for c in SUBPROCESS.values())))
    for rel, cases in SUBPROCESS.items():
        for argv, want in cases:  # (torchrun's store: a port of its own each)
            jobs.append((f'tools/{rel} {" ".join(argv)}', ['bash', osp.join(TOOLS, rel), *argv],
                         {**env, 'PORT': str(next(ports))}, want))
    procs = [(where, subprocess.Popen(cmd, cwd=REPO, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True), want) for where, cmd, e, want in jobs]
    failures = []
    for where, p, want in procs:
        _, err = p.communicate(timeout=600)
        try:
            check_answer(where, p.returncode, err, want)
        except AssertionError as e:
            failures.append(str(e))
    if failures:
        pytest.fail('\n\n'.join(failures), pytrace=False)
