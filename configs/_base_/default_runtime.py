# Shared by every task. The task's dataset base sets default_scope (mmseg / mmdet / train_cls) and its
# visualizer (scalars to JSON and TensorBoard); the schedule sets the loop, the optimizer and default_hooks.
custom_imports = dict(imports=['backbones'], allow_failed_imports=False)
# The Runner with this suite's fixes around MMEngine (backbones/engine/mmengine_fixes.py: trusted checkpoint
# loading, atomic writes, CPU distributed set-up, SyncBN on CPU); also what mmseg's / mmdet's own
# tools/train.py build.
runner_type = 'RobustRunner'
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),  # GPU runs; tools/train.py starts gloo itself when there is no GPU
)
log_level = 'INFO'
load_from = None
# load_from loads strictly (another arch or config is an error); True loads the tensors that fit and logs
# a summary of what was loaded, missing and of another shape (docs/reliability.md).
load_from_partial = False
resume = False
# A non-finite loss stops training before the step is applied (exit 2, one line naming the iteration, the
# loss terms and the lr); action='skip' drops such steps instead, at most max_skips in a row.
nonfinite_loss = dict(action='stop', max_skips=10)
randomness = dict(seed=0)
# Exact resume: every rank's RNG states go into the checkpoint (backbones/engine/hooks/); the MMEngine
# fixes before a run loads a checkpoint, whichever tool built the Runner (docs/mmengine_fixes.md).
# A leaf adds hooks of its own to these with `custom_hooks = _base_.custom_hooks + [dict(type=...)]` (a list
# of its own replaces them).
# NonFiniteLossHook: the non-finite-loss guard above; SaveOnSignalHook: SIGTERM, SIGUSR1 and SIGINT save a
# checkpoint and exit 128 + n (RobustRunner adds both to a config whose custom_hooks lack them).
custom_hooks = [dict(type='RNGStateHook'), dict(type='MMEngineFixesHook'), dict(type='NonFiniteLossHook'),
                dict(type='SaveOnSignalHook')]
