"""``MMEngineFixesHook``: the fixes of ``backbones.engine.mmengine_fixes`` for any Runner, and checkpoints
written as plain data."""
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from backbones.engine.mmengine_fixes import install_mmengine_fixes
from backbones.engine.plain_data import to_plain


@HOOKS.register_module()
class MMEngineFixesHook(Hook):
    """Installs the fixes when a run starts (any Runner), before it loads ``load_from`` / resumes: among them
    the checkpoint loaders that read every file safely and rebuild plain data (``checkpoint_io``).

    Checkpoints are written as plain data (``to_plain``: MMEngine's message hub and numpy values as tagged
    dicts of tensors and numbers), so that ``torch.load(weights_only=True)`` reads them: ``mmseg.apis
    .init_model``, ``mmdet.apis.init_detector``, the inferencers and the analysis tools load them without
    anything of ours. Its priority is the lowest, so that it converts what every other hook added."""

    priority = 'LOWEST'

    def before_run(self, runner) -> None:
        install_mmengine_fixes()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        to_plain(checkpoint)
