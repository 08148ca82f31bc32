"""``SegLocalVisualizer``: mmseg's, fed a C-contiguous image (the ADE configs' ``visualizer``).

mmseg 1.2.2 draws the class-name boxes with OpenCV on ``np.zeros_like(image)``, which keeps the layout of the
image it is given. ``tools/misc/browse_dataset.py`` passes ``inputs.permute(1, 2, 0)[..., ::-1]``-style views,
so OpenCV stops with "Layout of the output array img is incompatible with cv::Mat" (mmseg issue #3405, on
every data set). Copying the image to C order once per drawn sample fixes that and changes no pixel.

MMEngine keeps named instances per class (``ManagerMixin``); this class shares mmseg's table, so mmseg's hooks
and tools that ask ``mmseg.visualization.SegLocalVisualizer.get_current_instance()`` find the one built here.
"""
import numpy as np
from mmseg.visualization import SegLocalVisualizer as MMSegLocalVisualizer

from backbones.registry import VISUALIZERS


@VISUALIZERS.register_module()
class SegLocalVisualizer(MMSegLocalVisualizer):
    """mmseg's ``SegLocalVisualizer`` (same arguments) whose ``add_datasample`` takes any image layout."""

    def add_datasample(self, name, image, *args, **kwargs):
        return super().add_datasample(name, np.ascontiguousarray(image), *args, **kwargs)


SegLocalVisualizer._instance_dict = MMSegLocalVisualizer._instance_dict  # one table of named instances
