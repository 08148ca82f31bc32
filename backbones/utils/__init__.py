"""The bottom layer: ``errors.py`` (the one error hierarchy), ``config.py`` (reading a config, strict
``--cfg-options``), ``cli.py`` (common options, ``run_cli``: one ``error:`` line and exit 2), ``io.py`` (atomic
writes, short name lists)."""
