"""Mixup/CutMix, random erasing, gradient accumulation and EMA are really active in training."""
import copy
import os.path as osp

import numpy as np
import pytest
import timm
import torch
from mmengine.config import Config
from mmengine.hooks import EMAHook, Hook
from mmengine.optim import build_optim_wrapper

from backbones import InceptionNeXt, convert_timm_state_dict
from backbones.datasets.synthetic import write_imagenet
from backbones.engine.runner import RobustRunner
from tests.helpers import REPO
from tests.helpers.threads import single_torch_thread
from tests.helpers.tool import tool
from train_cls.registry import MODELS

# module scope: set before the module-scoped runs
one_thread = pytest.fixture(autouse=True, scope='module')(single_torch_thread)


def load(name):
    return Config.fromfile(osp.join(REPO, 'configs', f'{name}.py'))


def small_model_cfg(name='inceptionnext-t_8xb128-300e_in1k', num_classes=10, **backbone):
    cfg = load(name).model
    cfg.backbone.update(arch='atto', **backbone)
    cfg.head.num_classes = num_classes
    return cfg


def batch(n=8, size=32, num_classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(inputs=[torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)
                        for _ in range(n)],
                data_samples=[dict(gt_label=i % num_classes) for i in range(n)])


# -------------------------------------------------------------------------------------------------
# Mixup / CutMix and random erasing (the data preprocessor, called by BaseModel.train_step)
# -------------------------------------------------------------------------------------------------
def test_mixup_cutmix_make_consistent_soft_targets():
    cfg = small_model_cfg()
    cfg.data_preprocessor.random_erasing = None  # isolate mixup here
    model = MODELS.build(cfg)
    pre = model.data_preprocessor
    mix = pre.mixup
    assert (mix.mixup_alpha, mix.cutmix_alpha, mix.label_smoothing, mix.mix_prob, mix.switch_prob,
            mix.num_classes) == (0.8, 1.0, 0.1, 1.0, 0.5, 10)
    data = batch()
    plain = pre(copy.deepcopy(data), training=False)
    assert plain['data_samples']['gt_score'] is None
    x = plain['inputs']
    labels = plain['data_samples']['gt_label']
    off, on = 0.1 / 10, 1 - 0.1 + 0.1 / 10
    kinds = set()
    np.random.seed(0)
    for _ in range(12):
        out = pre(copy.deepcopy(data), training=True)
        t, xm = out['data_samples']['gt_score'], out['inputs']
        assert t.shape == (8, 10) and torch.allclose(t.sum(1), torch.ones(8)) and t.min() >= off - 1e-7
        lam = float((t[0, labels[0]] - off) / (on - off))  # labels differ from the flipped partner's
        assert 0 < lam <= 1
        assert torch.allclose(t[0], lam * torch.eye(10)[labels[0]] * (on - off) + (1 - lam) * torch.eye(10)[
            labels[-1]] * (on - off) + off, atol=1e-6)
        partner = x.flip(0)
        if torch.allclose(xm, lam * x + (1 - lam) * partner, atol=1e-5):
            kinds.add('mixup')
        else:  # cutmix: every pixel from one of the two images; the box area matches lam
            from_self = (xm == x).all(1)
            assert ((xm == x) | (xm == partner)).all()
            assert abs(from_self[0].float().mean().item() - lam) < 1e-6
            kinds.add('cutmix')
    assert kinds == {'mixup', 'cutmix'}
    # the loss on mixed targets is timm's SoftTargetCrossEntropy
    out = pre(copy.deepcopy(data), training=True)
    model.eval()  # no drop path: the same logits twice
    logits = model(out['inputs'])
    expected = torch.sum(-out['data_samples']['gt_score'] * logits.log_softmax(-1), -1).mean()
    assert torch.allclose(model.loss(out['inputs'], out['data_samples'])['loss'], expected, atol=1e-5)


def test_odd_batch_with_mixup_is_a_clear_error():
    model = MODELS.build(small_model_cfg())
    with pytest.raises(ValueError, match='even batch'):
        model.data_preprocessor(batch(n=7), training=True)


def test_no_mixup_uses_label_smoothing():
    cfg = small_model_cfg('inceptionnext-b_8xb32-30e_in1k-384px')
    cfg.data_preprocessor.random_erasing = None
    model = MODELS.build(cfg)
    out = model.data_preprocessor(batch(), training=True)
    assert model.data_preprocessor.mixup is None and out['data_samples']['gt_score'] is None
    model.eval()  # no drop path / head dropout: the same logits twice
    logits = model(out['inputs'])
    y = out['data_samples']['gt_label']
    expected = 0.9 * torch.nn.functional.cross_entropy(logits, y) - 0.1 * logits.log_softmax(-1).mean(-1).mean()
    assert torch.allclose(model.loss(out['inputs'], out['data_samples'])['loss'], expected, atol=1e-5)


def test_random_erasing_in_training_only():
    cfg = small_model_cfg()
    assert cfg.data_preprocessor.random_erasing == dict(probability=0.25, mode='pixel', max_count=1,
                                                        num_splits=0)
    cfg.data_preprocessor.random_erasing.probability = 1.0
    cfg.data_preprocessor.mixup = None
    pre = MODELS.build(cfg).data_preprocessor
    data = batch(size=64)
    ref = pre(copy.deepcopy(data), training=False)['inputs']
    torch.manual_seed(0)
    erased = pre(copy.deepcopy(data), training=True)['inputs']
    changed = (erased != ref).any(1).float().mean((1, 2))  # fraction of pixels replaced, per image
    assert (changed > 0.01).all() and (changed < 0.5).all()  # one box of 2%..33% of the image each


# -------------------------------------------------------------------------------------------------
# Gradient accumulation
# -------------------------------------------------------------------------------------------------
def _accumulation_run(break_accumulation=None):
    """The recipe's AdamW on three float64 copies of one model: ``a`` accumulates 2 micro-batches of 8
    images (OptimWrapper(accumulative_counts=2)), ``b`` takes the batch of 16 in one step, ``c`` (the control)
    steps on each half. BN in eval mode (norm_eval), so batch statistics do not depend on the split.

    float64, because AdamW's first step, lr * g / (|g| + eps), is about lr * sign(g): near g = 0 it moves a
    weight by lr per eps (1e-8) of rounding error in g, and layer scale 1e-6 puts many gradients there, so
    float32 weights after the step differ by a CPU-dependent fraction of lr (measured: 3e-4 lr on an AMD EPYC,
    1e-2 lr on an Intel Xeon). In float64 the rounding is ~1e-16 relative and the bounds of
    ``_accumulation_errors`` hold with 5 orders of magnitude to spare; a wrong accumulation is off by O(1).

    ``break_accumulation``: 'scale' (the loss is not divided by the accumulation count) or 'zero_grad' (the
    gradient is cleared between micro-batches), to show that the checks catch a wrong accumulation."""
    cfg = small_model_cfg(norm_eval=True, drop_path_rate=0.0)
    cfg.data_preprocessor.update(random_erasing=None, mixup=None)
    cfg.label_smoothing = 0.0
    torch.manual_seed(0)
    a = MODELS.build(cfg).double().train()  # train(): norm_eval puts the BN layers in eval mode
    assert not a.backbone.stem.norm.training
    b, c = copy.deepcopy(a), copy.deepcopy(a)
    ow_cfg = load('inceptionnext-t_8xb128-300e_in1k').optim_wrapper
    assert ow_cfg.accumulative_counts == 4 and ow_cfg.optimizer.type == 'AdamW'
    ow_a = build_optim_wrapper(a, dict(ow_cfg, accumulative_counts=2))
    ow_b = build_optim_wrapper(b, dict(ow_cfg, accumulative_counts=1))
    ow_c = build_optim_wrapper(c, dict(ow_cfg, accumulative_counts=1))
    if break_accumulation == 'scale':
        ow_a.scale_loss = lambda loss: loss
    elif break_accumulation == 'zero_grad':
        backward = ow_a.backward

        def clear_then_backward(loss, **kw):
            ow_a.zero_grad()
            backward(loss, **kw)
        ow_a.backward = clear_then_backward
    grads = {}  # the gradient each optimizer step sees

    def record(model, key):
        def hook(optimizer, args, kwargs):
            grads.setdefault(key, []).append({n: p.grad.clone() for n, p in model.named_parameters()})
        return hook
    ow_a.optimizer.register_step_pre_hook(record(a, 'a'))
    ow_b.optimizer.register_step_pre_hook(record(b, 'b'))
    init = {k: v.clone() for k, v in a.state_dict().items()}
    snapshot, accumulating = None, None
    for step in range(2):
        big = batch(n=16, seed=step)
        halves = [dict(inputs=big['inputs'][i:i + 8], data_samples=big['data_samples'][i:i + 8])
                  for i in (0, 8)]
        a.train_step(halves[0], ow_a)
        if step == 0:  # nothing applied yet: the gradient is being accumulated
            unchanged = all(torch.equal(v, init[k]) for k, v in a.state_dict().items())
            grad = a.head.fc2.weight.grad
            accumulating = unchanged and 'a' not in grads and grad is not None and grad.abs().sum() > 0
        a.train_step(halves[1], ow_a)
        b.train_step(big, ow_b)
        if step == 0:
            c.train_step(halves[0], ow_c)  # the control: two steps on the halves, no accumulation
            c.train_step(halves[1], ow_c)
            snapshot = [{k: v.detach().clone() for k, v in m.named_parameters()} for m in (a, b, c)]
    return dict(grads=grads, snapshot=snapshot, init=init, lr=ow_cfg.optimizer.lr, accumulating=accumulating)


def _accumulation_errors(run) -> list:
    """What differs between the accumulated and the big-batch update (empty: they are the same)."""
    errors, grads, lr = [], run['grads'], run['lr']
    if not run['accumulating'] or len(grads['a']) != 2 or len(grads['b']) != 2:
        errors.append(f'not one optimizer step per 2 micro-batches (steps {len(grads["a"])})')
        return errors
    # The accumulated gradient is the big batch's, to float64 rounding (measured: 3e-15 of each tensor's
    # gradient norm; the second step's weights already differ by the first step's rounding).
    for step, (ga, gb) in enumerate(zip(grads['a'], grads['b'])):
        worst = max(((ga[n] - gb[n]).norm() / gb[n].norm().clamp_min(1e-300)).item() for n in gb)
        if worst > 1e-9:
            errors.append(f'step {step}: gradients differ by {worst:.2e} of their norm')
    # After the first step the weights are the big batch's (measured: 1.4e-12 lr), while the control (two
    # plain steps on the halves) is off by a sizeable fraction of a step.
    pa, pb, pc = run['snapshot']
    init = run['init']
    moved = max((pb[k] - init[k]).abs().max().item() for k in pb)
    diff = max((pa[k] - pb[k]).abs().max().item() for k in pa)
    control = max((pc[k] - pb[k]).abs().max().item() for k in pc)
    if not moved > 0.5 * lr:  # AdamW's first step moves the weights by about lr
        errors.append(f'the big-batch step moved the weights by {moved:.2e} only (lr {lr})')
    if not diff < 1e-6 * lr:
        errors.append(f'weights after the step differ by {diff:.2e} = {diff / lr:.2e} lr')
    if not control > 0.2 * lr:
        errors.append(f'the control differs by {control:.2e} only')
    return errors


def test_accumulation_equals_the_big_batch():
    """OptimWrapper(accumulative_counts=2) on 2 x 8 images makes the update of one batch of 16 (the recipe's
    AdamW), one optimizer step per 2 micro-batches. (The former float32 version failed on an Intel Xeon,
    and here too with oneDNN's convolutions turned off: 2.8e-5 against its bound of 2e-5.)"""
    assert _accumulation_errors(_accumulation_run()) == []


@pytest.mark.parametrize('broken', ['scale', 'zero_grad'])
def test_a_wrong_accumulation_fails_the_comparison(broken):
    errors = _accumulation_errors(_accumulation_run(broken))
    assert any('gradients differ' in e for e in errors), errors


# -------------------------------------------------------------------------------------------------
# EMA (MMEngine's EMAHook, as the 384 fine-tune configures it), its checkpoint and extraction
# -------------------------------------------------------------------------------------------------
class RecordWeights(Hook):
    """Keeps the raw weights after every training iteration (after the optimizer step)."""

    def __init__(self):
        self.history = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        model = getattr(runner.model, 'module', runner.model)
        self.history.append({k: v.detach().clone() for k, v in model.state_dict().items()})


@pytest.fixture(scope='module')
def ema_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('ema')
    root = str(tmp / 'data')
    write_imagenet(root, num_classes=4, num_train=4, num_val=2, size=40, seed=3)
    torch.manual_seed(0)
    start = timm.create_model('inception_next_atto', num_classes=4).state_dict()
    torch.save(convert_timm_state_dict(start), tmp / 'start.pth')
    cfg = load('inceptionnext-b_8xb32-30e_in1k-384px')
    momentum = 0.3  # the recipe's 1e-4 made visible in 8 iterations
    ema_index = next(i for i, h in enumerate(cfg.custom_hooks) if h.type == 'EMAHook')
    opts = {
        'model.backbone.arch': 'atto', 'model.head.num_classes': 4,
        'model.init_cfg.checkpoint': str(tmp / 'start.pth'),
        f'custom_hooks.{ema_index}.momentum': momentum,
        # lr 1e-2 at the effective batch 8 = 1 process x 4 images x 2 accumulation steps: RobustRunner keeps
        # 1e-2 (MMEngine's own scale_lr, blind to accumulation, would halve it)
        'optim_wrapper.optimizer.lr': 1e-2, 'optim_wrapper.accumulative_counts': 2,
        'auto_scale_lr.base_batch_size': 8,
        'train_cfg.max_epochs': 2, 'train_cfg.val_interval': 2, 'default_hooks.logger.interval': 1,
    }
    for split in ('train', 'val', 'test'):
        opts.update({f'{split}_dataloader.{k}': v for k, v in dict(
            batch_size=4, num_workers=0, persistent_workers=False, pin_memory=False).items()})
        opts.update({f'{split}_dataloader.dataset.data_root': root,
                     f'{split}_dataloader.dataset.pipeline.1.input_size': 32})
    cfg.merge_from_dict(opts)
    cfg.work_dir = str(tmp / 'work')
    cfg.launcher = 'none'
    runner = RobustRunner.from_cfg(cfg)
    rec = RecordWeights()
    runner.register_hook(rec, priority='LOWEST')
    runner.train()
    ema = next(h for h in runner.hooks if isinstance(h, EMAHook))
    return dict(runner=runner, rec=rec, ema=ema, momentum=momentum, work=tmp / 'work', start=start, tmp=tmp)


@pytest.mark.slow
def test_runner_lr_scaling_counts_accumulation_and_steps_every_second_iteration(ema_run):
    runner, hist = ema_run['runner'], ema_run['rec'].history
    assert type(runner).__name__ == 'RobustRunner'
    assert runner.optim_wrapper.optimizer.param_groups[0]['lr'] == pytest.approx(1e-2)
    model = getattr(runner.model, 'module', runner.model)
    params = [n for n, _ in model.named_parameters()]
    changed = [any(not torch.equal(a[n], b[n]) for n in params) for a, b in zip(hist, hist[1:])]
    assert changed == [True, False, True, False, True, False, True]  # an update after every 2nd iteration


@pytest.mark.slow
def test_ema_is_the_expected_average(ema_run):
    hist, m = ema_run['rec'].history, ema_run['momentum']
    assert len(hist) == 8  # 16 images / batch 4 x 2 epochs
    # it started from the given weights (the fine-tune's init_cfg; an official/timm file): after the first
    # iteration (accumulating, no step yet) the parameters are exactly those
    start = convert_timm_state_dict(ema_run['start'])
    params = dict(ema_run['runner'].model.named_parameters())
    assert all(torch.equal(hist[0][k], start[k]) for k in params)
    # EMAHook copies the weights at its first step, then averages
    expected = {k: v.float().clone() for k, v in hist[0].items()}
    for w in hist[1:]:
        for k in expected:
            expected[k] = (1 - m) * expected[k] + m * w[k].float()
    ema_sd = ema_run['ema'].ema_model.module.state_dict()
    raw = hist[-1]
    floats = [k for k, v in raw.items() if v.is_floating_point()]
    # float32 elementwise updates (MMEngine's lerp_ against the formula above) round differently: a few ulps
    # per step, so the bound is relative to each tensor's largest value (1e-5, ~80 ulps; measured 2e-7)
    err = max(((ema_sd[k] - expected[k]).abs().max() / expected[k].abs().max().clamp_min(1e-30)).item()
              for k in floats)
    gap = max((ema_sd[k] - raw[k]).abs().max().item() for k in floats)
    assert err < 1e-5 and gap > 1e-3, (err, gap)
    assert any('running_mean' in k for k in floats)  # BN statistics are averaged too (update_buffers)


@pytest.mark.slow
def test_ema_checkpoint_and_extract_backbone(ema_run):
    ckpt_path = ema_run['work'] / 'epoch_2.pth'
    from backbones import read_checkpoint
    ckpt = read_checkpoint(str(ckpt_path))
    assert {'state_dict', 'meta', 'ema_state_dict'} <= set(ckpt)
    assert 'steps' in ckpt['ema_state_dict'] and all(k == 'steps' or k.startswith('module.')
                                                     for k in ckpt['ema_state_dict'])
    raw = ema_run['rec'].history[-1]
    ema_sd = ema_run['ema'].ema_model.module.state_dict()
    outs = {}
    for flag in ('', '--ema'):
        out = ema_run['tmp'] / f'backbone{flag}.pth'
        tool('tools/model_converters/extract_backbone.py', ckpt_path, out, '--arch', 'atto', *([flag] if flag else []),
             env={'OMP_NUM_THREADS': '1'})
        outs[flag] = torch.load(out, weights_only=True)
        # loads strictly into the backbone the dense configs build
        bb = InceptionNeXt('atto', out_norm=True, init_cfg=dict(type='Pretrained', checkpoint=str(out)))
        bb.init_weights()
        src = ema_sd if flag else raw
        key = 'stages.2.blocks.3.token_mixer.dwconv_w.weight'
        assert torch.equal(bb.stages[2].blocks[3].token_mixer.dwconv_w.weight, src['backbone.' + key])
        assert torch.equal(bb.stem.norm.running_var, src['backbone.stem.norm.running_var'])
    assert not torch.equal(outs['']['stem.conv.weight'], outs['--ema']['stem.conv.weight'])
    assert set(outs['']) == {k[len('backbone.'):] for k in raw if k.startswith('backbone.')}
