"""Fixtures of the engine tests (those shared with other folders come from tests/helpers/)."""
from tests.helpers.mmdet import mmdet_registered  # noqa: F401  (a fixture: pytest finds it here by name)
