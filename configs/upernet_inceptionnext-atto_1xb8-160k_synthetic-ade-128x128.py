# UperNet-atto on the generated ADE-layout dataset (the main job's model, tools/main_job.sh), with the
# real UperNet recipe's optimizer and hooks; the main job shrinks the head and schedule for CPU through
# --cfg-options. Whole-image inference (the images are 160x128).
_base_ = ['_base_/models/upernet_inceptionnext.py', '_base_/datasets/synthetic_ade.py',
          '_base_/schedules/upernet_160k_adamw.py', '_base_/default_runtime.py']
num_classes = 6
# the official ImageNet-1k release: downloaded once into $TORCH_HOME/hub/checkpoints (a local path works too)
pretrained = 'https://github.com/sail-sg/inceptionnext/releases/download/model/inceptionnext_atto.pth'
model = dict(
    data_preprocessor=dict(size=(128, 128)),
    backbone=dict(arch='atto', drop_path_rate=0.1,
                  init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[40, 80, 160, 320], channels=256, num_classes=num_classes),
    auxiliary_head=dict(in_channels=160, channels=128, num_classes=num_classes),
    test_cfg=dict(_delete_=True, mode='whole'))
