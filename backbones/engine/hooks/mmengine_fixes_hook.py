"""``MMEngineFixesHook``: the fixes of ``backbones.engine.mmengine_fixes`` for any Runner, and checkpoints
written as plain data."""
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from backbones.engine.mmengine_fixes import install_mmengine_fixes
from backbones.engine.plain_data import from_plain, to_plain


@HOOKS.register_module()
class MMEngineFixesHook(Hook):
    """Installs the fixes when a run starts (any Runner), before it loads ``load_from`` / resumes (the
    checkpoint loader that reads every file safely, ``models.weights.read_checkpoint``).

    Checkpoints are written as plain data (``to_plain``: MMEngine's message hub and numpy values as tagged
    dicts of tensors and numbers), so that ``torch.load(weights_only=True)`` reads them: ``mmseg.apis
    .init_model``, ``mmdet.apis.init_detector``, the inferencers and the analysis tools load them without
    anything of ours. Loading one first rebuilds the objects (``from_plain``), before MMEngine reads them:
    this hook runs first of all hooks; ``RobustRunner`` also does it around every hook, so a hook of lower
    priority that adds numpy data still writes plain data."""

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        install_mmengine_fixes()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        to_plain(checkpoint)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        from_plain(checkpoint)
