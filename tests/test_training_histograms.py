"""The weight and gradient histograms of the training graphs (training/optimizers.py) sit behind one
bool placeholder: a step that skips them runs the same fetches as the step that writes them (one
executor, prepared once), trains the same, and the histograms keep their classic tags. (The triplet
tool writing them on an epoch's last step only: test_train_speed.py.) The softmax tool, which does
not feed the placeholder, still writes them with --log_histograms."""
import glob
import os

import numpy as np
import tensorflow as tf

from facenet_tf import train_softmax
from facenet_tf.training import optimizers
from test_towers import SOFTMAX, synthetic_faces  # noqa: F401 (fixture)
from training_faces import run_training

tf1 = tf.compat.v1
DATA = np.arange(8, dtype=np.float32).reshape(2, 4) / 8.0


def _step_graph():
    tf1.set_random_seed(1)
    x = tf1.placeholder(tf.float32, [None, 4])
    w = tf1.get_variable('w', [4, 2])
    loss = tf.reduce_mean(tf.square(tf.matmul(x, w)), name='loss')
    tf1.add_to_collection('losses', loss)
    step = tf1.train.get_or_create_global_step()
    train, _, _ = optimizers.build_train_op(loss, step, 'ADAGRAD', 0.1, 0.999, tf1.global_variables())
    (write,) = tf1.get_collection(optimizers.HISTOGRAMS)
    return x, w, train, tf1.summary.merge_all(), write


def test_histograms_only_when_asked_with_classic_tags_and_the_same_step():
    with tf.Graph().as_default():
        x, w, train, summary, write = _step_graph()
        runs = {}
        for histograms in (False, True):
            with tf1.Session() as sess:
                sess.run(tf1.global_variables_initializer())
                assert sess.run(write)      # on unless fed False (the softmax tool's summaries)
                before = sess.run(w)
                _, text = sess.run([train, summary], {x: DATA, write: histograms})
                runs[histograms] = before, sess.run(w), tf1.Summary.FromString(text)
    (w0, w1_without, without), (w0_again, w1_with, with_) = runs[False], runs[True]
    assert np.array_equal(w0, w0_again) and np.array_equal(w1_without, w1_with)    # bit for bit the same step
    assert not any(v.HasField('histo') for v in without.value)
    assert {v.tag for v in without.value} == {v.tag for v in with_.value if not v.HasField('histo')} != set()
    histos = {v.tag: v.histo for v in with_.value if v.HasField('histo')}
    assert set(histos) == {'w_1', 'w/gradients'}    # what tf.summary.histogram names them at the top level
    gradient = 2.0 * DATA.T @ (DATA @ w0) / DATA.shape[0] / w0.shape[1]
    assert histos['w/gradients'].num == 8
    assert np.isclose(histos['w/gradients'].sum, gradient.sum(), rtol=1e-5)
    assert np.isclose(histos['w/gradients'].sum_squares, np.square(gradient).sum(), rtol=1e-5)



def test_softmax_tool_with_log_histograms_still_writes_them(synthetic_faces, tmp_path):  # noqa: F811
    flags = list(SOFTMAX)
    flags[flags.index('--max_nrof_epochs') + 1] = '1'
    code, _, log_dir = run_training(train_softmax, synthetic_faces, tmp_path, flags + ['--log_histograms'])
    assert code == 0
    histograms = {v.tag for path in glob.glob(os.path.join(log_dir, 'events.out.tfevents.*'))
                  for event in tf1.train.summary_iterator(path) for v in event.summary.value if v.HasField('histo')}
    assert any(tag.endswith('/gradients') for tag in histograms)
    assert any(not tag.endswith('/gradients') for tag in histograms)
