"""``--cfg-options`` on the shipped configs: keys the config does not list are added as MMEngine adds them
(the ones mmdet / mmseg users pass every day), and a key that the class built from its dict does not take
fails before the Runner is built, with one line naming the key and the closest name that class takes."""
import pytest

from backbones.utils.config import check_added_keys, load_config
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
    (DET, 'test_evaluator.outfile_prefix', './work_dirs/coco_detection/test'),
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
