"""The one error hierarchy of the suite.

Every error a user can cause with a command-line argument, a config, a data set or a checkpoint is a
``UserInputError``; ``backbones.utils.cli.run_cli`` turns any of them into one ``error: ...`` line and exit 2.
Library functions raise these, they never exit.
"""


class UserInputError(RuntimeError):
    """Bad input from the command line, a config, a data set or a file: the message names it."""


class BadValueError(UserInputError, ValueError):
    """A value out of its range or of the wrong form: a command-line argument, a config value, an
    environment variable. Also a ``ValueError``, as library callers expect of a bad argument."""


class CheckpointError(UserInputError):
    """A checkpoint that cannot be read or does not fit the model."""


class DatasetError(UserInputError, ValueError):
    """A data set (folder, annotation file, image) that cannot be used as configured.

    Also a ``ValueError``: MMEngine's dataset builders and older callers catch that.
    """


class AnnotationError(DatasetError):
    """An annotation (segmentation map, COCO entry) that does not fit its image or the classes."""


class TrainingDivergedError(UserInputError):
    """The loss or the weights of a training run became non-finite (inf / nan): the run is stopped before
    anything non-finite is saved. Almost always a setting of the config (the learning rate, no gradient
    clipping), hence a ``UserInputError`` (one ``error:`` line, exit 2)."""
