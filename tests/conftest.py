"""Shared test setup: make `src/` importable as the scripts see it, and locate ../shared."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, 'src')
SHARED = os.path.join(os.path.dirname(ROOT), 'shared')
if SRC not in sys.path:
    sys.path.insert(0, SRC)

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import facenet_tf  # noqa: E402,F401  (TF1 graph semantics for every test, as in the scripts)


@pytest.fixture(scope='session')
def shared_dir():
    """Path of ../shared; tests that need it are skipped when it is absent."""
    if not os.path.isdir(os.path.join(SHARED, 'reference')):
        pytest.skip('../shared (reference data) is not present beside the project')
    return SHARED


@pytest.fixture(scope='session')
def reference_dir(shared_dir):
    return os.path.join(shared_dir, 'reference')


@pytest.fixture(scope='session')
def data_dir(shared_dir):
    return os.path.join(shared_dir, 'data')
