"""Fixtures of the datasets tests (those shared with other folders come from tests/helpers/)."""
from tests.helpers.mmdet import mmdet_registered  # noqa: F401  (a fixture: pytest finds it here by name)
from tests.helpers.seg_data import seg_cfg  # noqa: F401  (a fixture: pytest finds it here by name)
