"""Shared test setup: make `src/` importable as the scripts see it, locate ../shared and tests/data,
mark the tests that need material from outside the repository, and count why tests were skipped.

Markers (added automatically at collection, see pytest_collection_modifyitems):
  needs_shared           the test uses ../shared (fixtures shared_dir, reference_dir, data_dir):
                         photos, reference crops, refweights.py or synth_data.py. Skipped when ../shared
                         is absent; FACENET_SHARED=<path> points elsewhere (e.g. /nonexistent to try a
                         clean clone).
  needs_published_model  the test uses the published Keras model (fixtures keras_h5, published_model).
Tests without these markers run on a clean clone: the classic numbers they check come from tests/data/.
"""
import fcntl
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, 'src')
SHARED = os.path.abspath(os.environ.get('FACENET_SHARED') or os.path.join(os.path.dirname(ROOT), 'shared'))
TEST_DATA = os.path.join(ROOT, 'tests', 'data')
if SRC not in sys.path:
    sys.path.insert(0, SRC)

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import facenet_tf  # noqa: E402,F401

try:  # TensorFlow set up as the scripts do (quiet import, oneDNN, TF1 graph semantics) for every test
    from facenet_tf import tf_setup  # noqa: E402
except ImportError:  # a package that sets TensorFlow up when it is imported
    tf_setup = None
if tf_setup is not None:
    tf_setup.configure()

SHARED_FIXTURES = ('shared_dir', 'reference_dir', 'data_dir')
PUBLISHED_MODEL_FIXTURES = ('keras_h5', 'published_model')
SHARED_REASON = '../shared absent'
PUBLISHED_MODEL_REASON = 'published model absent'
MARKERS = {
    'needs_shared': 'uses ../shared (photos, reference crops, refweights.py, synth_data.py); skipped '
                    'when it is absent (FACENET_SHARED=<path> points elsewhere)',
    'needs_published_model': 'uses the published Keras model facenet_keras.h5 (bash data/get_facenet_keras.sh '
                             'or FACENET_KERAS_H5); skipped when it is absent',
}


def shared_present():
    return os.path.isdir(os.path.join(SHARED, 'reference'))


def _keras_h5_path():
    """$FACENET_KERAS_H5, else the one default place of the fetched model: the cache folder that
    data/get_facenet_keras.sh writes and FaceNet.pretrained reads (pretrained.cache_dir())."""
    from facenet_tf import pretrained
    for path in (os.environ.get('FACENET_KERAS_H5', ''), os.path.join(pretrained.cache_dir(), 'facenet_keras.h5')):
        if path and os.path.isfile(path):
            return path
    return None


def _shared_skip_reason():
    return '%s (looked for %s; set FACENET_SHARED to point elsewhere)' % (SHARED_REASON, SHARED)


def _published_model_skip_reason():
    return ('%s: facenet_keras.h5 not found (bash data/get_facenet_keras.sh fetches it, or set '
            'FACENET_KERAS_H5)' % PUBLISHED_MODEL_REASON)


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line('markers', '%s: %s' % (name, text))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    have_shared, have_model = shared_present(), _keras_h5_path() is not None
    for item in items:
        names = set(getattr(item, 'fixturenames', ()))
        # with `-n 2` (pytest.ini sets --dist loadgroup) a worker takes whole groups: a test file, or
        # every test of the published model, so module and session fixtures are built once
        published = names.intersection(PUBLISHED_MODEL_FIXTURES)
        item.add_marker(pytest.mark.xdist_group('published_model' if published else item.nodeid.split('::')[0]))
        if names.intersection(SHARED_FIXTURES):
            item.add_marker(pytest.mark.needs_shared)
            if not have_shared:
                item.add_marker(pytest.mark.skip(reason=_shared_skip_reason()))
        if published:
            item.add_marker(pytest.mark.needs_published_model)
            if not have_model:
                item.add_marker(pytest.mark.skip(reason=_published_model_skip_reason()))


def _skip_reason(report):
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        text = str(longrepr[2])
        return text[len('Skipped: '):] if text.startswith('Skipped: ') else text
    return str(longrepr)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line per skip reason: '<n> tests skipped: ../shared absent', '... published model absent',
    then the other reasons."""
    skipped = [r for r in terminalreporter.stats.get('skipped', []) if getattr(r, 'when', 'call') in
               ('setup', 'call')]
    if not skipped:
        return
    counts = {}
    for report in skipped:
        reason = _skip_reason(report)
        for known in (SHARED_REASON, PUBLISHED_MODEL_REASON):
            if reason.startswith(known):
                reason = known
        counts[reason] = counts.get(reason, 0) + 1
    terminalreporter.write_sep('-', 'skipped tests by reason')
    order = [SHARED_REASON, PUBLISHED_MODEL_REASON] + sorted(r for r in counts
                                                             if r not in (SHARED_REASON, PUBLISHED_MODEL_REASON))
    for reason in order:
        if reason in counts:
            n = counts[reason]
            terminalreporter.write_line('%d test%s skipped: %s' % (n, '' if n == 1 else 's', reason))


@pytest.fixture(scope='session', autouse=True)
def no_scheduler_index():
    """The aligner and export_embeddings.py take a shard index from these when no --shard is given:
    a suite run inside a Slurm array task or a Kubernetes Indexed Job must not see them."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ('SLURM_ARRAY_TASK_ID', 'SLURM_ARRAY_TASK_COUNT', 'SLURM_ARRAY_TASK_MIN',
                     'SLURM_ARRAY_TASK_STEP', 'JOB_COMPLETION_INDEX'):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope='session')
def test_data_dir():
    """tests/data: small reference numbers carried in the repository (see tests/data/README.md)."""
    return TEST_DATA


@pytest.fixture(scope='session')
def shared_dir():
    """Path of ../shared (or $FACENET_SHARED); tests that need it are skipped when it is absent."""
    if not shared_present():
        pytest.skip(_shared_skip_reason())
    return SHARED


@pytest.fixture(scope='session')
def reference_dir(shared_dir):
    return os.path.join(shared_dir, 'reference')


@pytest.fixture(scope='session')
def data_dir(shared_dir):
    return os.path.join(shared_dir, 'data')


@pytest.fixture
def gallery(data_dir, tmp_path):
    """A gallery folder of recognize: one photo of each of two people."""
    from hostile import copy_file, lfw_photo
    base = tmp_path / 'gallery'
    copy_file(lfw_photo(data_dir, 'Colin_Powell', 2), base / 'Colin_Powell' / 'p.jpg')
    copy_file(lfw_photo(data_dir, 'Serena_Williams', 2), base / 'Serena_Williams' / 's.jpg')
    return base


@pytest.fixture(scope='session')
def keras_h5():
    """The published Keras FaceNet model file (20170512-110547, 128-D)."""
    path = _keras_h5_path()
    if path is None:
        pytest.skip(_published_model_skip_reason())
    return path


@pytest.fixture(scope='session')
def published_model(keras_h5, tmp_path_factory):
    """(model folder, frozen .pb) of the published model imported by import_keras_model.py (run
    in-process once; its printed lines are kept in import.log beside them)."""
    import contextlib
    import io
    from facenet_tf import import_model as import_keras_model
    base = tmp_path_factory.mktemp('published')
    folder, pb = str(base / '20170512-110547'), str(base / '20170512-110547.pb')
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        import_keras_model.main(import_keras_model.parse_arguments(
            [keras_h5, folder, '--pb', pb, '--model_name', '20170512-110547']))
    (base / 'import.log').write_text(out.getvalue())
    return folder, pb


def _built_once(tmp_path_factory, name, write):
    """The path of a file or folder `name` that every pytest-xdist worker of this run shares: the
    first worker to take the lock writes it with write(temporary path), the others wait and reuse it."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base  # the run's folder under xdist
    path = str(root / name)
    with open(path + '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(path):
            write(path + '.tmp')
            os.replace(path + '.tmp', path)
    return path


@pytest.fixture(scope='session')
def ref_pb(reference_dir, tmp_path_factory):
    """tests/lfw_refmodel.py's reference-weights InceptionResnetV1 as a frozen .pb (built once a run)."""
    import lfw_refmodel
    return _built_once(tmp_path_factory, 'refmodel.pb', lambda path: lfw_refmodel.write_frozen(reference_dir, path))


@pytest.fixture(scope='session')
def ref_checkpoint(reference_dir, tmp_path_factory):
    """The same network as a classic checkpoint folder (built once a run; tests must not write in it)."""
    import lfw_refmodel
    return _built_once(tmp_path_factory, 'refmodel_ckpt',
                       lambda path: lfw_refmodel.write_checkpoint(reference_dir, path))


@pytest.fixture(scope='session')
def tiny_pb(tmp_path_factory):
    """A small frozen model (a fixed random convolution, pooled, L2-normalised, 648-D; the classic
    tensor names) that loads and runs in a fraction of a second: for tests of what a tool feeds a
    model and how it opens its session, not of embeddings."""
    import numpy as np
    from facenet_tf import tf_setup as setup
    tf = setup.configure()
    tf1 = tf.compat.v1
    path = str(tmp_path_factory.mktemp('tiny') / 'tiny.pb')
    kernel = np.random.default_rng(0).normal(0.0, 0.1, (5, 5, 3, 8)).astype(np.float32)
    with tf1.Graph().as_default() as graph:
        images = tf1.placeholder(tf.float32, [None, 160, 160, 3], name='input')
        tf1.placeholder_with_default(False, [], name='phase_train')
        features = tf.nn.relu(tf.nn.conv2d(images, tf.constant(kernel), 4, 'VALID'))
        pooled = tf.reshape(tf.nn.avg_pool2d(features, 4, 4, 'VALID'), [-1, 9 * 9 * 8])
        tf.nn.l2_normalize(pooled, 1, 1e-10, name='embeddings')
        with open(path, 'wb') as f:
            f.write(graph.as_graph_def().SerializeToString())
    return path


@pytest.fixture(scope='module')
def photos(data_dir, tmp_path_factory):
    """Class folders of the first three LFW photos (250x250) of Aaron_Peirsol and Abdullah_Gul, as
    links (the model-format tests)."""
    root = tmp_path_factory.mktemp('photos')
    for person in ('Aaron_Peirsol', 'Abdullah_Gul'):
        os.makedirs(str(root / person))
        for name in sorted(os.listdir(os.path.join(data_dir, 'lfw_deepfunneled', person)))[:3]:
            os.symlink(os.path.join(data_dir, 'lfw_deepfunneled', person, name), str(root / person / name))
    return str(root)
