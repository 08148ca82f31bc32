"""``--cfg-options`` (backbones/utils/config.py): merged strictly into a config; on the shipped configs, keys the
config does not list are added as MMEngine adds them (the ones mmdet / mmseg users pass every day), and a key
that the class built from its dict does not take fails before the Runner is built, with one line naming the
key and the closest name that class takes."""
import re

import pytest
from mmengine.config import Config

from backbones.utils.config import check_added_keys, load_config, merge_cfg_options
from backbones.utils.errors import UserInputError

SEG = 'configs/upernet_inceptionnext-atto_1xb8-160k_synthetic-ade-128x128.py'
DET = 'configs/mask-rcnn_inceptionnext-atto_fpn_500iter_synthetic-coco.py'
CLS = 'configs/inceptionnext-atto_4xb320-600e_in1k.py'


def _load(config, options):
    cfg = load_config(config, options)
    check_added_keys(cfg)  # what the tools' pre-flight (backbones.apis.run.preflight) runs first
    return cfg


@pytest.mark.parametrize('config,key,value', [
    (DET, 'test_evaluator.classwise', True),  # mmdet's CocoMetric takes both (its test-dev recipe)
    (DET, 'test_evaluator.outfile_prefix', 'results/coco_detection/test'),
    (SEG, 'randomness.deterministic', True),  # mmengine.runner.set_random_seed
    (SEG, 'train_dataloader.dataset.indices', 4),  # MMEngine's BaseDataset
    (DET, 'train_dataloader.dataset.indices', 4),
    (SEG, 'optim_wrapper.clip_grad.max_norm', 1.0),  # no clip_grad in the config
    (CLS, 'optim_wrapper.clip_grad.max_norm', 1.0),  # clip_grad=None in the config
], ids=lambda v: v.split('/')[-1][:12] if isinstance(v, str) else None)
def test_keys_the_config_does_not_list_are_added(config, key, value):
    cfg = _load(config, {key: value})
    node = cfg
    for part in key.split('.'):
        node = node[part]
    assert node == value


@pytest.mark.parametrize('config,key,msg', [
    (SEG, 'model.backbone.drop_path_rat', r"InceptionNeXt \(model.backbone\) takes no 'drop_path_rat' "
                                          r"\(did you mean drop_path_rate\?\)"),
    (SEG, 'model.decode_head.chanels', r"UPerHead \(model.decode_head\) takes no 'chanels' "
                                       r"\(did you mean channels"),
    (SEG, 'test_evaluator.classwise', r"IoUMetric \(test_evaluator\) takes no 'classwise'$"),  # mmseg's: no
    (SEG, 'randomness.determinstic', r"randomness \(mmengine.runner.set_random_seed\) takes no "
                                     r"'determinstic' \(did you mean deterministic\?\)"),
    (SEG, 'optim_wrapper.clip_grad.max_nrom', r"takes no 'max_nrom' \(did you mean max_norm\?\)"),
    (SEG, 'train_dataloader.batchsize', r"DataLoader\) takes no 'batchsize' \(did you mean batch_size"),
    (SEG, 'train_cfg.max_iter', r"IterBasedTrainLoop \(train_cfg\) takes no 'max_iter' "
                                r"\(did you mean max_iters"),
    (SEG, 'param_scheduler.1.eta_mn', r"PolyLR \(param_scheduler.1\) takes no 'eta_mn' "
                                      r"\(did you mean eta_min\?\)"),
    (SEG, 'default_hooks.logger.intreval', r"LoggerHook \(default_hooks.logger\) takes no 'intreval'"),
    (SEG, 'train_dataloader.dataset.pipeline.1.reduce_zero_labl',
     r"LoadAnnotations \(train_dataloader.dataset.pipeline.1\) takes no 'reduce_zero_labl'"),
    (DET, 'test_evaluator.clas_wise', r"CocoMetric \(test_evaluator\) takes no 'clas_wise' "
                                      r"\(did you mean classwise"),
    (SEG, 'trian_cfg.max_iters', r"the top level has no 'trian_cfg', and the Runner takes no such argument "
                                 r"\(did you mean train_cfg"),
])
def test_a_key_no_one_takes_is_named_with_the_closest(config, key, msg):
    with pytest.raises(UserInputError, match=rf"^unknown config key '{key}' in --cfg-options: .*{msg}"):
        _load(config, {key: 1})


@pytest.mark.parametrize('options,msg', [
    ({'model.backbone.init_cfg': None, 'model.backbone.init_cfg.checkpoint': 'x.pth'},
     r"^--cfg-options model.backbone.init_cfg=None and model.backbone.init_cfg.checkpoint='x.pth' in one "
     r"command: the first replaces model.backbone.init_cfg with None, the second sets a key inside it; "
     r"pass one of them$"),
    ({'model.backbone.init_cfg.checkpoint': 'x.pth', 'model.backbone.init_cfg': None},  # the other order
     r"^--cfg-options model.backbone.init_cfg=None and model.backbone.init_cfg.checkpoint='x.pth' in one "),
    ({'model.backbone.arch.depth': 5},
     r"^--cfg-options model.backbone.arch.depth: model.backbone.arch is 'atto' in the config, not a dict"),
    ({'train_dataloader.dataset.pipeline.99.scale': 5},
     r"^unknown config key 'train_dataloader.dataset.pipeline.99.scale' in --cfg-options: "
     r"train_dataloader.dataset.pipeline is a list of 8; '99' is no index of it \(0..7\)$"),
])
def test_options_that_cannot_merge_are_one_line(options, msg):
    with pytest.raises(UserInputError, match=msg):
        _load(SEG, options)


# --------------------------------------------------------------------------------------------------
# Values that fail inside the Runner: one line from the tools' pre-flight, exit 2
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def ade_root(tmp_path_factory):
    """A small generated ADE-layout data set (the runs below would stop at a missing data folder)."""
    from backbones.datasets.synthetic import write_ade
    root = str(tmp_path_factory.mktemp('ade'))
    write_ade(root, num_train=2, num_val=1, size=(64, 64), seed=2)
    return root


@pytest.mark.parametrize('options,msg', [
    (['optim_wrapper.optimizer.lr=-1'],
     r"^error: optim_wrapper.optimizer.lr=-1: AdamW refuses it \(Invalid learning rate: -1\)$"),
    (['optim_wrapper.optimizer.betas=[0.9,1.5]'],
     r"^error: optim_wrapper.optimizer.betas=\[0.9, 1.5\]: AdamW refuses it \(Invalid beta parameter"),
    (['param_scheduler.1.end=1000'],
     r"^error: param_scheduler.1 \(PolyLR\): end=1000 is not after begin=1500; a scheduler must end after it "
     r"begins: set param_scheduler.1.begin / param_scheduler.1.end to fit the schedule"),
    (['model.backbone.out_indices=[a]'],
     r"^error: model.backbone.out_indices=\['a'\]: stage ids, whole numbers 0..3"),
    (['model.backbone.init_cfg=None', 'model.backbone.init_cfg.checkpoint=x.pth'],
     r"^error: --cfg-options model.backbone.init_cfg=None and "
     r"model.backbone.init_cfg.checkpoint='x.pth' in one "),
    (['model.backbone.drop_path_rat=0.2'], r"^error: unknown config key 'model.backbone.drop_path_rat' in "
                                           r"--cfg-options: InceptionNeXt \(model.backbone\) takes no"),
])
def test_train_refuses_in_one_line(tmp_path, monkeypatch, ade_root, options, msg):
    from tests.helpers.tool import TOOLS, run_in_process
    monkeypatch.syspath_prepend(TOOLS)  # tools import tools/launch/malloc_env.py
    data = [f'{s}_dataloader.dataset.data_root={ade_root}' for s in ('train', 'val')]
    code, err = run_in_process('train.py', [SEG, '--work-dir', str(tmp_path / 'w'), '--cfg-options', *options,
                                            *data, 'train_cfg.max_iters=2', 'train_dataloader.num_workers=0'])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert re.match(msg, err.strip()), err
    assert not (tmp_path / 'w').exists()  # before the Runner wrote anything





def test_cfg_options_are_strict():
    cfg = Config(dict(model=dict(backbone=dict(arch='tiny')),
                      train_cfg=dict(type='IterBasedTrainLoop', max_iters=3),
                      pipeline=[dict(type='Load'), dict(type='Resize', scale=(64, 64))]))
    merge_cfg_options(cfg, {'model.backbone.arch': 'atto', 'pipeline.1.scale': (32, 32)})
    assert cfg.model.backbone.arch == 'atto' and cfg.pipeline[1].scale == (32, 32)
    with pytest.raises(UserInputError, match="unknown config key 'pipeline.2.scale'"):
        merge_cfg_options(cfg, {'pipeline.2.scale': 5})
    with pytest.raises(UserInputError, match="the top level has no 'trian_cfg'"):
        merge_cfg_options(cfg, {'trian_cfg.max_iters': 5})
    # a key the config does not list is added; the loop's signature, not the config, catches the typo
    check_added_keys(cfg, merge_cfg_options(cfg, {'train_cfg.val_interval': 2}))
    with pytest.raises(UserInputError, match=r"'train_cfg.max_iter'.*did you mean max_iters"):
        check_added_keys(cfg, merge_cfg_options(cfg, {'train_cfg.max_iter': 5}))
