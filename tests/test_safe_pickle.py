"""Classifier files are unpickled with an allow-list: scikit-learn estimators, NumPy arrays and builtins
load; a file that would run a command is refused before anything runs, with one line naming the class."""
import io
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from facenet_tf import classifier
from facenet_tf import classify, safe_pickle
from facenet_tf.cli import run
from facenet_tf.errors import FaceNetError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _embeddings(n=60, dim=16, classes=3, seed=0):
    rng = np.random.RandomState(seed)
    centres = rng.randn(classes, dim)
    labels = np.arange(n) % classes
    emb = centres[labels] + 0.1 * rng.randn(n, dim)
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32), labels


class _RunsCommand(object):
    """Unpickling this object calls `function(*args)`: what a hostile classifier file does."""

    def __init__(self, function, args):
        self.function, self.args = function, tuple(args)

    def __reduce__(self):
        return self.function, self.args


def test_classic_svm_file_loads_and_predicts_the_same(tmp_path):
    emb, labels = _embeddings()
    model = classify.train(emb, labels)
    path = str(tmp_path / 'svm.pkl')
    classify.save(path, model, ['a b', 'c', 'd'])
    loaded, names = classify.load(path)
    assert names == ['a b', 'c', 'd']
    np.testing.assert_array_equal(loaded.predict_proba(emb), model.predict_proba(emb))
    np.testing.assert_array_equal(loaded.facenet_embeddings_, emb)


@pytest.mark.parametrize('protocol', [0, 2, 4, 5])
def test_the_svm_loads_at_every_protocol(protocol):
    emb, labels = _embeddings()
    model = classify.train(emb, labels)
    loaded, names = safe_pickle.load(io.BytesIO(pickle.dumps((model, ['a', 'b', 'c']), protocol=protocol)))
    assert names == ['a', 'b', 'c']
    np.testing.assert_array_equal(loaded.predict_proba(emb), model.predict_proba(emb))


@pytest.mark.filterwarnings('ignore::sklearn.exceptions.ConvergenceWarning')
def test_other_estimators_are_refused():
    """classifier.py writes only an SVC: other estimators (and their Cython trees) are not admitted."""
    emb, labels = _embeddings()
    estimators = [LogisticRegression(), KNeighborsClassifier(algorithm='kd_tree'),
                  KNeighborsClassifier(algorithm='ball_tree'), RandomForestClassifier(n_estimators=3, random_state=0),
                  MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0),
                  make_pipeline(StandardScaler(), LogisticRegression())]
    for est in estimators:
        est.fit(emb, labels)
        with pytest.raises(safe_pickle.RefusedClass):
            safe_pickle.load(io.BytesIO(pickle.dumps((est, ['a', 'b', 'c']), protocol=4)))


def _hostile_call(function, marker):
    """(function, args) whose call creates the file `marker`."""
    code = "open('%s', 'w').close()" % marker
    if function is os.system:
        return function, ('%s -c "%s"' % (sys.executable, code),)
    if function is subprocess.call:
        return function, ([sys.executable, '-c', code],)
    return function, (code,)


@pytest.mark.parametrize('function, refused', [
    (os.system, '%s.system' % os.name),
    (subprocess.call, 'subprocess.call'),
    (eval, 'builtins.eval'),
])
def test_a_file_that_would_run_a_command_is_refused(tmp_path, function, refused):
    marker = tmp_path / 'ran'
    path = tmp_path / 'hostile.pkl'
    path.write_bytes(pickle.dumps((_RunsCommand(*_hostile_call(function, marker)), ['x']), protocol=2))
    with pytest.raises(FaceNetError) as e:
        classify.load(str(path))
    assert 'refused to load %s' % refused in str(e.value)
    assert '\n' not in str(e.value)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the file really runs the command when unpickled freely
    assert marker.exists()


@pytest.mark.parametrize('data, refused', [
    (b'\x80\x04csklearn.utils\nos.system\n(Vtrue\ntR.', 'sklearn.utils.os.system'),   # nested name
    (b'\x80\x02csklearn.base\nclone\n(N\ntR.', 'sklearn.base.clone'),                  # a function
    (b'\x80\x02cbuiltins\ngetattr\n(N\ntR.', 'builtins.getattr'),
])
def test_nested_names_and_functions_of_allowed_modules_are_refused(data, refused):
    with pytest.raises(safe_pickle.RefusedClass) as e:
        safe_pickle.load(io.BytesIO(data))
    assert e.value.name == refused


def test_classifier_script_refuses_the_file_in_one_line(tmp_path, capsys):
    marker = tmp_path / 'ran'
    path = tmp_path / 'hostile.pkl'
    path.write_bytes(pickle.dumps(_RunsCommand(*_hostile_call(os.system, marker)), protocol=2))
    (tmp_path / 'faces' / 'a').mkdir(parents=True)
    code = run(classifier.main, classifier.parse_arguments(
        ['CLASSIFY', str(tmp_path / 'faces'), str(tmp_path / 'model.pb'), str(path)]), 'classifier.py')
    err = capsys.readouterr().err
    assert code == 2
    assert err.count('\n') == 1 and 'classifier.py: error:' in err
    assert 'refused to load %s.system' % os.name in err
    assert not marker.exists()
