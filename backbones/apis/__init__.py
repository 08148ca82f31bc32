"""What the tools call: ``build.py`` (a model from a config, outside a Runner), ``run.py`` (a train / test run's
config and pre-flight checks), ``inference.py`` (one image through a segmentor / detector, as a picture)."""
