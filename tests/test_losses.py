"""Classification losses against NumPy: combined angular margin (values, finite gradients at
cos = +-1, monotone continuation past pi), softmax Logits layer, center loss, prelogits norm."""
import math

import numpy as np
import pytest
import tensorflow as tf

from facenet_tf.training import losses

tf1 = tf.compat.v1


def _np_margin_logits(x, w, labels, s, m1, m2, m3):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    w = w / np.linalg.norm(w, axis=0, keepdims=True)
    cos = x @ w
    logits = s * cos
    rows = np.arange(len(labels))
    c = cos[rows, labels]
    theta = np.arccos(np.clip(c, -1 + 1e-6, 1 - 1e-6))
    theta_max = (math.pi - m2) / m1
    f = np.cos(m1 * theta + m2) - m3
    f_max = math.cos(m1 * theta_max + m2) - m3
    f = np.where(theta <= theta_max, f, c - (math.cos(theta_max) - f_max))
    logits[rows, labels] = s * f
    return logits, s * cos


def _run_margin(x, w, labels, s, m):
    with tf.Graph().as_default():
        prelogits = tf.constant(x, tf.float32)
        logits, plain = losses.margin_logits(prelogits, tf.constant(labels), w.shape[1], s, *m)
        xent = losses.cross_entropy(logits, tf.constant(labels))
        weights = [v for v in tf1.global_variables() if v.op.name == 'Logits/weights'][0]
        grads = tf.gradients(xent, [prelogits, weights])
        with tf1.Session() as sess:
            weights.load(w, sess)
            return sess.run([logits, plain, xent] + grads)


@pytest.mark.parametrize('loss', ['arcface', 'cosface', 'combined'])
def test_margin_logits_match_numpy(loss):
    rng = np.random.RandomState(0)
    x = rng.randn(12, 8).astype(np.float32)
    w = rng.randn(8, 5).astype(np.float32)
    labels = rng.randint(0, 5, 12)
    x[0] = -w[:, labels[0]] * 3.0              # theta = pi: past theta_max for arcface and combined
    m = losses.margin_parameters(loss)
    logits, plain, xent, gx, gw = _run_margin(x, w, labels, 30.0, m)
    ref, ref_plain = _np_margin_logits(x, w, labels, 30.0, *m)
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=2e-4)
    np.testing.assert_allclose(plain, ref_plain, rtol=1e-4, atol=2e-4)
    shifted = ref - ref.max(axis=1, keepdims=True)
    ref_xent = np.mean(np.log(np.exp(shifted).sum(1)) - shifted[np.arange(12), labels])
    assert abs(xent - ref_xent) < 1e-3 * max(1.0, ref_xent)
    assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gw))
    # the margin only lowers the true-class logit
    rows = np.arange(12)
    assert np.all(logits[rows, labels] < plain[rows, labels] + 1e-4)


def test_margin_defaults_and_overrides():
    assert losses.margin_parameters('arcface') == (1.0, 0.5, 0.0)
    assert losses.margin_parameters('cosface') == (1.0, 0.0, 0.35)
    assert losses.margin_parameters('combined') == (1.0, 0.3, 0.2)
    assert losses.margin_parameters('cosface', m3=0.4) == (1.0, 0.0, 0.4)
    for bad in ({'m1': 0.0}, {'m2': 3.2}, {'m2': -0.1}, {'m3': -0.5}):
        with pytest.raises(ValueError):
            losses.margin_parameters('arcface', **bad)


@pytest.mark.parametrize('m', [(1.0, 0.5, 0.0), (1.0, 0.0, 0.35), (2.0, 0.0, 0.0), (1.0, 0.3, 0.2)])
def test_gradients_finite_at_cos_plus_minus_one(m):
    w = np.eye(4, 3, dtype=np.float32)
    x = np.stack([w[:, 0], -w[:, 1], 2 * w[:, 2], -5 * w[:, 0]]).astype(np.float32)
    labels = np.array([0, 1, 2, 0])
    logits, _, xent, gx, gw = _run_margin(x, w, labels, 64.0, m)
    assert np.all(np.isfinite(logits)) and np.isfinite(xent)
    assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gw))
    # at cos = 1 the target logit is s * (cos(m2) - m3); at cos = -1 it is at or below s * (-1 - m3)
    assert logits[0, 0] == pytest.approx(64.0 * (math.cos(m[1]) - m[2]), abs=0.05)
    assert logits[1, 1] <= 64.0 * (-1.0 - m[2]) + 0.05


@pytest.mark.parametrize('m', [(1.0, 0.5, 0.0), (1.0, 0.3, 0.2), (2.0, 0.0, 0.0), (1.5, 0.2, 0.1)])
def test_target_monotone_and_continuous_past_pi(m):
    theta = np.linspace(0.0, math.pi, 20001)
    with tf.Graph().as_default(), tf1.Session() as sess:
        cos = tf.constant(np.cos(theta), tf.float32)
        f_t = losses.target_margin(cos, *m)
        f, grad = sess.run([f_t, tf.gradients(f_t, cos)[0]])
    assert np.all(np.diff(f) <= 1e-6)                      # never increases with theta
    assert np.max(np.abs(np.diff(f))) < 2e-3               # no jump where m1*theta + m2 passes pi
    assert np.all(np.isfinite(grad)) and np.all(grad >= -1e-5)
    theta_max = (math.pi - m[1]) / m[0]
    past = theta > theta_max + 1e-3
    assert past.any()
    # past theta_max: the cosine shifted by a constant, at least m3 below it
    gap = np.cos(theta[past]) - f[past]
    np.testing.assert_allclose(gap, gap[0], atol=1e-4)
    assert gap[0] >= m[2] - 1e-5
    # the margin never turns into a bonus
    assert np.all(f <= np.cos(theta) + 1e-5)


def test_softmax_logits_layer_variables_and_weight_decay():
    with tf.Graph().as_default():
        tf1.set_random_seed(3)
        logits = losses.softmax_logits(tf.ones([2, 6]), 4, weight_decay=5e-4)
        names = [v.op.name for v in tf1.trainable_variables()]
        reg = tf1.get_collection(tf1.GraphKeys.REGULARIZATION_LOSSES)
        weights = tf1.trainable_variables()[0]
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            out, w, r = sess.run([logits, weights, reg[0]])
    assert names == ['Logits/weights', 'Logits/biases'] and out.shape == (2, 4)
    # float32 sums of six weights: absolute tolerance, as a logit near zero has no relative one
    np.testing.assert_allclose(out, np.ones((2, 6)) @ w, rtol=1e-5, atol=1e-6)
    assert r == pytest.approx(5e-4 * np.sum(w ** 2) / 2, rel=1e-5)


def test_center_loss_value_and_center_update():
    rng = np.random.RandomState(1)
    features = rng.randn(6, 3).astype(np.float32)
    labels = np.array([0, 2, 2, 1, 0, 2])
    start = rng.randn(3, 3).astype(np.float32)
    with tf.Graph().as_default():
        loss, centers = losses.center_loss(tf.constant(features), tf.constant(labels), 0.9, 3)
        (update,) = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
        with tf1.Session() as sess:
            centers.load(start, sess)
            value = sess.run(loss)
            np.testing.assert_array_equal(sess.run(centers), start)   # the loss alone leaves them
            value_with_update, _ = sess.run([loss, update])
            after = sess.run(centers)
    expected = np.mean((features - start[labels]) ** 2)
    assert value == pytest.approx(expected, rel=1e-5)
    assert value_with_update == pytest.approx(expected, rel=1e-5)
    ref = start.copy()
    np.subtract.at(ref, labels, 0.1 * (start[labels] - features))
    np.testing.assert_allclose(after, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('p', [1.0, 2.0])
def test_prelogits_norm(p):
    x = np.array([[3.0, -4.0, 0.0], [1.0, 1.0, -1.0]], np.float32)
    with tf.Graph().as_default(), tf1.Session() as sess:
        value = sess.run(losses.prelogits_norm(tf.constant(x), p))
    expected = np.mean(np.sum((np.abs(x) + 1e-4) ** p, axis=1) ** (1.0 / p))
    assert value == pytest.approx(expected, rel=1e-5)
