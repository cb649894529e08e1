import os
import sys

# Let tests import helpers from tests/ (fixtures/), the repo root (benchmarks/) and tools/ as plain modules.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (os.path.join(ROOT, 'tests'), ROOT, os.path.join(ROOT, 'tools')):
    if path not in sys.path:
        sys.path.insert(0, path)
