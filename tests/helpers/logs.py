"""What MMEngine's current logger prints, captured in process."""
import logging


class LogCapture(logging.Handler):
    """What MMEngine's current logger prints (``print_log(..., logger='current')``), as ``text``; a context
    manager."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    @property
    def text(self) -> str:
        return '\n'.join(r.getMessage() for r in self.records)

    def warnings(self):
        return [r.getMessage() for r in self.records if r.levelno == logging.WARNING]

    def __enter__(self):
        from mmengine.logging import MMLogger
        self._logger = MMLogger.get_current_instance()
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self._logger.removeHandler(self)
