"""Around MMEngine's Runner: ``runner.py`` (``RobustRunner``), ``mmengine_fixes.py`` (the fixes, their reasons,
and the one call that installs them) over ``plain_data.py``, ``checkpoint_io.py``, ``distributed.py`` and
``work_dir.py`` (one concern each), ``hooks/`` (one hook per module), ``optimizers.py`` (layer-wise lr
decay), ``checks.py`` (a run's checkpoint and backbone checks), ``visualization.py`` (the ADE configs'
visualizer, in the ``backbones`` scope of ``backbones/registry.py``)."""
