import logging
import os
import sys

import pytest

# Let tests import helpers from tests/ (fixtures/), the repo root (benchmarks/) and tools/ as plain modules.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (os.path.join(ROOT, 'tests'), ROOT, os.path.join(ROOT, 'tools')):
    if path not in sys.path:
        sys.path.insert(0, path)


@pytest.fixture
def logged_warnings():
    """Warning lines printed through mmengine's logger while the test runs."""
    from mmengine.logging import MMLogger
    lines = []

    class Handler(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    handler = Handler(level=logging.WARNING)
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)
