"""The classification configs carry the paper's / official scripts' recipe, read from the loaded configs."""
import math
import os.path as osp

import pytest
import timm
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS

from backbones import convert_timm_state_dict
from backbones.engine.runner import RobustRunner
from tests.helpers import REPO
from tests.helpers.threads import single_torch_thread
from train_cls.registry import MODELS

# module scope: set before the module-scoped runs
one_thread = pytest.fixture(autouse=True, scope='module')(single_torch_thread)


# variant: (arch, drop path, lr, per-GPU batch, accumulation, GPUs of the official script, total batch, epochs,
#           warmup epochs, warmup start lr, final lr, eval crop_pct)
RECIPES = {
    'atto': ('atto', 0.1, 1e-3, 320, 1, 4, 1280, 600, 5, 5e-7, 5e-7, 0.875),
    't': ('tiny', 0.1, 4e-3, 128, 4, 8, 4096, 300, 20, 1e-6, 1e-5, 0.875),
    's': ('small', 0.3, 4e-3, 128, 4, 8, 4096, 300, 20, 1e-6, 1e-5, 0.875),
    'b': ('base', 0.4, 4e-3, 128, 4, 8, 4096, 300, 20, 1e-6, 1e-5, 0.95),
}


CONFIGS = {'atto': 'inceptionnext-atto_4xb320-600e_in1k', 't': 'inceptionnext-t_8xb128-300e_in1k',
           's': 'inceptionnext-s_8xb128-300e_in1k', 'b': 'inceptionnext-b_8xb128-300e_in1k'}


def load(name):
    return Config.fromfile(osp.join(REPO, 'configs', f'{name}.py'))


def _scaled_lr(cfg, world_size, accumulation=None, batch_size=None):
    """The lr after RobustRunner.scale_lr (the method the Runner calls), for a world size and accumulation."""
    ow_cfg = dict(cfg.optim_wrapper)
    if accumulation is not None:
        ow_cfg['accumulative_counts'] = accumulation
    ow = build_optim_wrapper(torch.nn.Linear(2, 2), ow_cfg)

    class FakeRunner:  # what Runner.scale_lr reads from the runner
        logger = MMLogger.get_current_instance()
        param_schedulers = cfg.param_scheduler
    fake = FakeRunner()
    fake.world_size = world_size
    fake._train_dataloader = dict(batch_size=batch_size or cfg.train_dataloader.batch_size)
    RobustRunner.scale_lr(fake, ow, cfg.auto_scale_lr)
    return ow.optimizer.param_groups[0]['lr']


@pytest.mark.parametrize('name', list(RECIPES))
def test_recipe_values(name):
    arch, dp, lr, bs, accum, gpus, total, epochs, warm, warm_lr, min_lr, crop = RECIPES[name]
    cfg = load(CONFIGS[name])
    assert cfg.default_scope == 'train_cls' and cfg.runner_type == 'RobustRunner'
    assert cfg.model.backbone.arch == arch and cfg.model.backbone.drop_path_rate == dp
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.weight_decay, tuple(opt.betas)) == ('AdamW', lr, 0.05, (0.9, 0.999))
    assert cfg.optim_wrapper.paramwise_cfg == dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                                                   flat_decay_mult=0.0)
    # the total batch as the official script computes it: ALL_BATCH_SIZE / NUM_GPU / GRAD_ACCUM_STEPS
    assert cfg.train_dataloader.batch_size == bs and cfg.optim_wrapper.accumulative_counts == accum
    assert gpus * bs * accum == total == cfg.auto_scale_lr.base_batch_size and cfg.auto_scale_lr.enable
    assert cfg.train_cfg.max_epochs == epochs
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.begin, warmup.end, cosine.type, cosine.begin, cosine.end) == \
        ('LinearLR', 0, warm, 'CosineAnnealingLR', warm, epochs)
    assert warmup.convert_to_iter_based and cosine.convert_to_iter_based
    assert math.isclose(warmup.start_factor * lr, warm_lr) and cosine.eta_min == min_lr
    pre = cfg.model.data_preprocessor
    train_t, test_t = cfg.train_dataloader.dataset.pipeline[1], cfg.test_dataloader.dataset.pipeline[1]
    assert train_t.interpolation == test_t.interpolation == 'bicubic'
    assert test_t.crop_pct == crop and cfg.val_dataloader.dataset.pipeline[1].crop_pct == crop
    assert pre.mixup.cutmix_alpha == 1.0 and pre.mixup.label_smoothing == 0.1
    assert pre.random_erasing.mode == 'pixel'
    if name == 'atto':  # scripts/train_inceptionnext_atto.sh
        assert train_t.auto_augment == 'rand-m5-inc1-mstd101' and train_t.color_jitter == 0.0
        assert pre.mixup.mixup_alpha == 0.2 and pre.random_erasing.probability == 0.1
    else:  # the official train.py defaults (DeiT's)
        assert train_t.auto_augment == 'rand-m9-mstd0.5-inc1'
        assert pre.mixup.mixup_alpha == 0.8 and pre.random_erasing.probability == 0.25
    assert cfg.randomness.diff_rank_seed
    # auto-scaled lr: the official layout gives the paper's lr; fewer GPUs or less accumulation scale it
    assert math.isclose(_scaled_lr(cfg, gpus), lr)
    assert math.isclose(_scaled_lr(cfg, gpus // 2), lr / 2)
    assert math.isclose(_scaled_lr(cfg, gpus // 2, accumulation=accum * 2), lr)
    assert math.isclose(_scaled_lr(cfg, 1, accumulation=1, batch_size=64), lr * 64 / total)


def test_base_384_finetune_recipe():
    cfg = load('inceptionnext-b_8xb32-30e_in1k-384px')
    assert cfg.model.backbone.arch == 'base' and cfg.model.backbone.drop_path_rate == 0.7
    assert cfg.model.head.drop_rate == 0.5 and cfg.model.data_preprocessor.mixup is None
    assert cfg.model.label_smoothing == 0.1 and cfg.model.init_cfg.type == 'Pretrained'
    assert cfg.optim_wrapper.optimizer.lr == 5e-5 and cfg.train_cfg.max_epochs == 30
    assert 8 * cfg.train_dataloader.batch_size * cfg.optim_wrapper.accumulative_counts == 1024
    assert cfg.auto_scale_lr.base_batch_size == 1024
    assert math.isclose(_scaled_lr(cfg, 8), 5e-5)
    assert [s.type for s in cfg.param_scheduler] == ['ConstantLR'] and cfg.param_scheduler[0].factor == 1.0
    ema = [h for h in cfg.custom_hooks if h.type == 'EMAHook']
    assert len(ema) == 1 and math.isclose(1 - ema[0].momentum, 0.9999) and ema[0].update_buffers
    assert any(h.type == 'RNGStateHook' for h in cfg.custom_hooks)
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        assert loader.dataset.pipeline[1].input_size == 384
    assert cfg.test_dataloader.dataset.pipeline[1].crop_pct == 1.0


def test_base_384_starts_from_official_weights(tmp_path):
    """init_cfg of the 384 fine-tune takes an official/timm file as it is (atto here, for speed)."""
    torch.manual_seed(0)
    ref = timm.create_model('inception_next_atto', num_classes=1000).state_dict()
    torch.save(ref, tmp_path / 'official.pth')
    cfg = load('inceptionnext-b_8xb32-30e_in1k-384px')
    cfg.model.backbone.arch = 'atto'
    cfg.model.init_cfg.checkpoint = str(tmp_path / 'official.pth')
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert model.head.drop.p == 0.5
    ours = model.state_dict()
    for k, v in convert_timm_state_dict(ref).items():
        assert torch.equal(ours[k], v), k
    cfg.model.backbone.arch = 'tiny'
    from backbones import CheckpointError
    with pytest.raises(CheckpointError, match='shape mismatch'):
        MODELS.build(cfg.model).init_weights()


def test_schedule_warmup_then_cosine():
    """The lr per iteration from the config's schedulers: warmup 1e-6 -> 4e-3 over 20 epochs, cosine to 1e-5."""
    cfg = load('inceptionnext-t_8xb128-300e_in1k')
    ow = build_optim_wrapper(torch.nn.Linear(2, 2), cfg.optim_wrapper)
    per_epoch = 4
    scheds = [PARAM_SCHEDULERS.build(dict(s), default_args=dict(optimizer=ow, epoch_length=per_epoch))
              for s in cfg.param_scheduler]
    lrs = []
    for _ in range(300 * per_epoch):
        lrs.append(ow.optimizer.param_groups[0]['lr'])
        for s in scheds:
            s.step()
    assert math.isclose(lrs[0], 1e-6, rel_tol=1e-6)
    assert math.isclose(lrs[20 * per_epoch], 4e-3, rel_tol=1e-6) and max(lrs) <= 4e-3 * (1 + 1e-9)
    assert all(a < b for a, b in zip(lrs[:79], lrs[1:80]))          # rising through the warmup
    assert all(a > b for a, b in zip(lrs[80:-1], lrs[81:]))         # then only falling
    assert math.isclose(lrs[160 * per_epoch], (4e-3 + 1e-5) / 2, rel_tol=1e-3)  # cosine midpoint
    assert lrs[-1] < 1.01e-5


def test_no_weight_decay_on_biases_norms_and_layer_scale():
    cfg = load('inceptionnext-atto_4xb320-600e_in1k')
    model = MODELS.build(cfg.model)
    ow = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    wd = {names[id(g['params'][0])]: g['weight_decay'] for g in ow.optimizer.param_groups}
    assert len(wd) == len(names)
    for n, d in wd.items():
        p = dict(model.named_parameters())[n]
        assert d == (0.05 if p.ndim > 1 else 0.0), (n, d)  # timm: no decay on 1-d params and biases
    assert wd['backbone.stages.1.blocks.0.gamma'] == 0.0 and wd['head.fc1.weight'] == 0.05


@pytest.mark.parametrize('name,arch,dp', [('inceptionnext-atto_4xb320-600e_in1k', 'atto', 0.1),
                                          ('inceptionnext-t_8xb128-300e_in1k', 'tiny', 0.1)])
def test_configs_build_with_drop_path(name, arch, dp):
    cfg = load(name)
    model = MODELS.build(cfg.model)
    blocks = [b for s in model.backbone.stages for b in s.blocks]
    assert math.isclose(blocks[-1].drop_path.drop_prob, dp, rel_tol=1e-6)
    assert model.head.fc1.out_features == 3 * model.backbone.dims[-1] and model.head.fc2.out_features == 1000
    assert all(k.startswith(('backbone.', 'head.')) for k in model.state_dict())
