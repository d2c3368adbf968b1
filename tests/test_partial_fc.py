"""Sampled class centres (train_softmax.py --sample_rate): R = 1 is the full margin softmax, the draw
keeps the positives and remaps the labels, the update touches only the drawn rows, and a training
run with R < 1 (on two towers) learns and saves its centres without moving averages."""
import numpy as np
import pytest
import tensorflow as tf

from facenet_tf import train_softmax
from facenet_tf.training import losses, partial_fc
from facenet_tf.errors import FaceNetError
from test_towers import SOFTMAX, _checkpoint_variables, _losses, synthetic_faces  # noqa: F401 (fixture)
from training_faces import run_training

tf1 = tf.compat.v1
COSFACE = (1.0, 0.0, 0.35)
ARCFACE = (1.0, 0.5, 0.0)


@pytest.mark.parametrize('margins', [COSFACE, ARCFACE])
def test_rate_one_is_the_full_margin_softmax(margins):
    """Same class vectors (the columns of Logits/weights = the rows of Logits/centres): the loss and
    its gradient with respect to the embeddings agree to 1e-6."""
    rng = np.random.RandomState(0)
    prelogits = rng.normal(size=(12, 8)).astype(np.float32)
    labels = rng.randint(0, 30, 12)
    weights = rng.normal(size=(8, 30)).astype(np.float32)
    results = []
    for partial in (False, True):
        with tf.Graph().as_default(), tf1.Session() as sess:
            x = tf.constant(prelogits)
            if partial:
                logits, _, local, _, _ = partial_fc.partial_margin_logits(x, labels, 30, 1.0, 30.0, *margins)
            else:
                logits, _ = losses.margin_logits(x, labels, 30, 30.0, *margins)
                local = labels
            loss = losses.cross_entropy(logits, local)
            grad = tf.gradients(loss, x)[0]
            (variable,) = tf1.global_variables()
            sess.run(tf1.global_variables_initializer())
            variable.load(weights.T if partial else weights, sess)
            results.append(sess.run([loss, grad]))
    assert results[0][0] > 1.0
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-6)
    np.testing.assert_allclose(results[1][1], results[0][1], atol=1e-6)


def test_draw_keeps_positives_and_remaps_labels():
    """1000 classes at R = 0.1: 100 distinct classes in increasing order with every batch class, the
    labels' positions point at their classes, each step draws afresh; 150 distinct batch classes
    are all kept (more than ceil(R * C))."""
    rng = np.random.RandomState(1)
    with tf.Graph().as_default(), tf1.Session() as sess:
        labels = tf1.placeholder(tf.int64, [None])
        index, local = partial_fc.sample_classes(labels, 1000, 0.1)
        batch = rng.choice(1000, 30, replace=False).repeat(2)
        draws = [sess.run([index, local], {labels: batch}) for _ in range(2)]
        for drawn, positions in draws:
            assert drawn.shape == (100,) and np.all(np.diff(drawn) > 0)
            assert np.array_equal(drawn[positions], batch)
        assert not np.array_equal(draws[0][0], draws[1][0])
        many = rng.choice(1000, 150, replace=False)
        drawn, positions = sess.run([index, local], {labels: many})
        assert np.array_equal(np.sort(drawn), np.sort(many)) and np.array_equal(drawn[positions], many)
    assert partial_fc.sample_size(100000, 0.1) == 10000 and partial_fc.sample_size(7, 0.01) == 1


def test_update_touches_only_the_drawn_rows():
    """MOM (sparse apply): the gradient is an IndexedSlices of the drawn rows; after a step only
    those rows of the centres and of the momentum slot have changed, with weight decay on them."""
    rng = np.random.RandomState(2)
    with tf.Graph().as_default(), tf1.Session() as sess:
        x = tf.constant(rng.normal(size=(6, 8)).astype(np.float32))
        labels = tf.constant([3, 3, 50, 70, 70, 199], tf.int64)
        head = partial_fc.partial_margin_logits(x, labels, 200, 0.05, 16.0, *COSFACE, weight_decay=1e-3)
        loss = losses.cross_entropy(head.logits, head.labels) + head.decay
        (centres,) = tf1.global_variables()
        opt = tf1.train.MomentumOptimizer(0.1, 0.9)
        grads = opt.compute_gradients(loss, [centres])
        assert isinstance(grads[0][0], tf.IndexedSlices)
        train = opt.apply_gradients(grads)
        sess.run(tf1.global_variables_initializer())
        before = sess.run(centres)
        rows, _ = sess.run([head.index, train])
        after, momentum = sess.run([centres, opt.get_slot(centres, 'momentum')])
    assert len(rows) == 10 and {3, 50, 70, 199} <= set(rows)
    changed = np.flatnonzero(np.any(after != before, axis=1))
    assert np.array_equal(changed, rows)
    assert np.array_equal(np.flatnonzero(np.any(momentum != 0, axis=1)), rows)


def test_training_with_sampled_centres_on_two_towers(synthetic_faces, tmp_path):  # noqa: F811
    """--sample_rate 0.5 with 2 towers: the loss falls, the checkpoint holds Logits/centres
    [classes, D] and no moving average of it."""
    code, model_dir, log_dir = run_training(train_softmax, synthetic_faces, tmp_path,
                                            SOFTMAX + ['--sample_rate', '0.5', '--num_gpus', '2'])
    assert code == 0
    loss, _ = _losses(log_dir)
    assert loss[-1] < loss[0]
    variables = dict(_checkpoint_variables(model_dir))
    assert variables['Logits/centres'] == [4, 8]
    assert not any(name.startswith('Logits/centres/') for name in variables)
    assert 'TinyNet/Bottleneck/weights/ExponentialMovingAverage' in variables


def test_sample_rate_errors():
    with pytest.raises(FaceNetError, match=r'--sample_rate below 1 needs a margin loss'):
        train_softmax.main(train_softmax.parse_arguments(['--sample_rate', '0.5']))
    with pytest.raises(FaceNetError, match=r'--sample_rate must be in \(0, 1\]'):
        train_softmax.main(train_softmax.parse_arguments(['--sample_rate', '0', '--loss', 'cosface']))
