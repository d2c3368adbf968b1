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


def _keras_h5_path():
    for path in (os.environ.get('FACENET_KERAS_H5', ''),
                 os.path.join(SHARED, 'models', 'facenet_keras.h5'),
                 os.path.expanduser('~/.cache/facenet-tf1compat/facenet_keras.h5')):
        if path and os.path.isfile(path):
            return path
    return None


@pytest.fixture(scope='session')
def keras_h5():
    """The published Keras FaceNet model file (20170512-110547, 128-D)."""
    path = _keras_h5_path()
    if path is None:
        pytest.skip('facenet_keras.h5 not found (bash data/get_facenet_keras.sh fetches it, or set '
                    'FACENET_KERAS_H5)')
    return path


@pytest.fixture(scope='session')
def published_model(keras_h5, tmp_path_factory):
    """(model folder, frozen .pb) of the published model imported by import_keras_model.py."""
    from facenet_tf import keras_import
    from models import inception_resnet_v1
    base = tmp_path_factory.mktemp('published')
    folder, pb = str(base / '20170512-110547'), str(base / '20170512-110547.pb')
    keras_import.import_model(keras_h5, folder, inception_resnet_v1, '20170512-110547', pb_file=pb,
                              log=lambda line: None)
    return folder, pb
