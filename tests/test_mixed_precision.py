"""Mixed-precision training (--precision bf16/fp16, facenet_tf/training/mixed_precision.py): the
bf16 rewrite of a training step takes the network's convolutions and products (forward and
backward) and leaves the loss, the optimizer updates and the variables in float32; both training
scripts train in bf16 (the triplet one on two towers) and write the fp32 run's checkpoint; dynamic
loss scaling skips a step with non-finite gradients, halves and doubles its scale; fp16 without a
GPU is one line."""
import collections
import glob

import numpy as np
import pytest
import tensorflow as tf

from facenet_tf import cli, precision, tf_setup, train_softmax
from facenet_tf import train_triplet
from facenet_tf.models import small_cnn
from facenet_tf.training import mixed_precision, optimizers
from test_towers import SIZE, synthetic_faces  # noqa: F401 (fixture)
from training_faces import run_training

tf1 = tf.compat.v1
BF16 = tf.bfloat16.as_datatype_enum
FP32 = tf.float32.as_datatype_enum
# 32 px (the 16 px faces padded): at 16 px the network's last stride-2 convolutions see 1x1 maps, where
# oneDNN's bf16 backward pass gave NaN now and then in the second and later runs of a process
COMMON = ['--model_def', 'models.small_cnn', '--image_size', str(2 * SIZE), '--batch_size', '12',
          '--embedding_size', '8', '--nrof_preprocess_threads', '1', '--seed', '3']

needs_onednn = pytest.mark.skipif(not precision._onednn_enabled(), reason='the bf16 rewrite needs oneDNN')


def _dtype(node):
    return node.attr['T'].type if 'T' in node.attr else None


@needs_onednn
def test_bf16_step_runs_the_network_in_bf16_and_the_loss_and_updates_in_fp32(synthetic_faces):  # noqa: F811
    args = train_triplet.parse_arguments(['--data_dir', str(synthetic_faces), '--precision', 'bf16'] + COMMON)
    files = sorted(glob.glob(str(synthetic_faces / '*' / '*.png')))
    paths = np.array([files[0], files[1], files[8], files[9], files[10], files[16],
                      files[17], files[18], files[24], files[25], files[26], files[2]], dtype=object).reshape(-1, 3)
    with tf.Graph().as_default():
        g = train_triplet.build_graph(args, small_cnn)
        feed = {g.batch_size_placeholder: 12, g.learning_rate_placeholder: 0.05, g.phase_train_placeholder: True}
        losses, embeddings = {}, {}
        for name in ('fp32', 'bf16'):
            with tf1.Session(config=tf_setup.session_config(name)) as sess:
                sess.run(tf1.global_variables_initializer())
                coord = tf.train.Coordinator()
                threads = tf1.train.start_queue_runners(sess, coord)
                sess.run(g.queue.enqueue_op, {g.queue.image_paths_placeholder: paths,
                                              g.queue.labels_placeholder: np.arange(12).reshape(-1, 3),
                                              g.queue.control_placeholder: np.zeros((4, 3), np.int32)})
                before = sess.run(tf1.trainable_variables())
                metadata = tf1.RunMetadata()
                losses[name], embeddings[name], _ = sess.run([g.loss, g.embeddings, g.train_op], feed,
                                                             run_metadata=metadata,
                                           options=tf1.RunOptions(output_partition_graphs=True))
                after = sess.run(tf1.trainable_variables())
                coord.request_stop()
                sess.run(g.close_queue)
                coord.join(threads)
        nodes = [node for graph in metadata.partition_graphs for node in graph.node]   # the bf16 run's
    by_type = collections.defaultdict(set)
    for node in nodes:
        by_type[node.op].add(_dtype(node))
    for op in ('_MklNativeConv2D', '_MklNativeConv2DBackpropFilter', '_MklNativeConv2DBackpropInput', '_MklMatMul',
               '_MklNativeFusedBatchNormGradV3'):
        assert by_type[op] == {BF16}, (op, by_type[op])
    assert by_type['ApplyAdagrad'] == {FP32}
    in_bf16 = [node.name for node in nodes if _dtype(node) == BF16]
    assert not [name for name in in_bf16 if 'triplet_loss' in name or 'embeddings' in name or 'Regularizer' in name]
    assert all(v.dtype.base_dtype == tf.float32 for v in g.saved)
    assert all(not np.array_equal(b, a) for b, a in zip(before, after))   # every variable trained
    assert np.isfinite(losses['bf16']) and losses['bf16'] > 0
    cosines = np.sum(embeddings['bf16'] * embeddings['fp32'], axis=1)   # the same batch and initial weights
    assert cosines.min() > 0.99, cosines


@needs_onednn
def test_both_training_scripts_train_in_bf16_and_write_the_fp32_checkpoint(synthetic_faces, tmp_path):  # noqa: F811
    runs = {}
    for name, script, extra in (
            ('triplet', train_triplet, ['--images_per_person', '3', '--triplet_mining', 'batch', '--num_gpus', '2']),
            ('cosface', train_softmax, ['--loss', 'cosface', '--margin_s', '8', '--optimizer', 'ADAM',
                                        '--learning_rate', '0.01'])):
        for mode in ('fp32', 'bf16') if name == 'triplet' else ('bf16',):
            code, model_dir, _ = run_training(script, synthetic_faces, tmp_path / name / mode, COMMON + extra + [
                '--precision', mode, '--max_nrof_epochs', '1', '--epoch_size', '2'])
            assert code == 0
            reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(model_dir))
            runs[name, mode] = reader.get_variable_to_dtype_map()
            values = [reader.get_tensor(key) for key in runs[name, mode]]
            assert all(np.all(np.isfinite(v)) for v in values)
        if name == 'triplet':
            assert runs[name, 'bf16'] == runs[name, 'fp32']
        assert set(runs[name, 'bf16'].values()) == {tf.float32}
        assert not [key for key in runs[name, 'bf16'] if 'LossScale' in key or 'fp32_boundary' in key]


def test_fp16_without_a_gpu_is_one_line_and_writes_nothing(synthetic_faces, tmp_path, capsys):  # noqa: F811
    if tf.config.list_physical_devices('GPU'):
        pytest.skip('this machine has a GPU')
    argv = ['--data_dir', str(synthetic_faces), '--logs_base_dir', str(tmp_path / 'logs'), '--models_base_dir',
            str(tmp_path / 'models'), '--precision', 'fp16'] + COMMON
    for script in (train_triplet, train_softmax):
        assert cli.command(script.main, script.parse_arguments, argv) == 2
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and 'error: --precision fp16 needs a GPU (there is none here)' in err
    assert not (tmp_path / 'logs').exists() and not (tmp_path / 'models').exists()


# ------------------------------------------------------------------ dynamic loss scaling


def _scaled_graph(optimizer, initial_scale=8.0, period=2):
    """loss = sum(w * x) + sum(gather(e, [1]) * x): the gradients are x (dense) and x (sparse rows)."""
    x = tf1.placeholder(tf.float32, [3])
    w = tf1.get_variable('w', initializer=np.array([1.0, 2.0, 3.0], np.float32))
    e = tf1.get_variable('e', initializer=np.ones((2, 3), np.float32))
    loss = tf.reduce_sum(w * x) + tf.reduce_sum(tf.gather(e, [1]) * x)
    step = tf1.train.get_or_create_global_step()
    opt = mixed_precision.LossScaleOptimizer(optimizer, initial_scale=initial_scale, period=period)
    train = opt.apply_gradients(opt.compute_gradients(loss, [w, e]), step)
    return x, w, e, step, opt, train


def test_loss_scaling_unscales_skips_non_finite_steps_and_adapts_its_scale():
    with tf.Graph().as_default():
        x, w, e, step, opt, train = _scaled_graph(tf1.train.AdagradOptimizer(1.0, initial_accumulator_value=1.0))
        accumulator = opt.get_slot(w, 'accumulator')
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            state = lambda: sess.run([w, e, accumulator, step, opt.scale, opt.good_steps])  # noqa: E731
            sess.run(train, {x: [0.5, -1.0, 2.0]})
            w1, e1, acc1, step1, scale1, good1 = state()
            # Adagrad on the unscaled gradient: accumulator 1 + g^2, w -= g / sqrt(accumulator)
            g = np.array([0.5, -1.0, 2.0])
            np.testing.assert_allclose(acc1, 1.0 + g ** 2, rtol=1e-6)
            np.testing.assert_allclose(w1, [1.0, 2.0, 3.0] - g / np.sqrt(1.0 + g ** 2), rtol=1e-6)
            np.testing.assert_allclose(e1[1], 1.0 - g / np.sqrt(1.0 + g ** 2), rtol=1e-6)
            np.testing.assert_array_equal(e1[0], [1.0, 1.0, 1.0])   # the row not gathered
            assert (step1, scale1, good1) == (1, 8.0, 1)
            for bad in ([np.inf, 0.0, 0.0], [np.nan, 1.0, 1.0]):   # skipped: nothing moves but the step
                sess.run(train, {x: bad})
                w2, e2, acc2, step2, scale2, good2 = state()
                np.testing.assert_array_equal(w2, w1)
                np.testing.assert_array_equal(e2, e1)
                np.testing.assert_array_equal(acc2, acc1)
                assert good2 == 0 and step2 == step1 + 1
                step1, scale1 = step2, scale2
            assert scale1 == 2.0    # halved twice
            sess.run(train, {x: [1.0, 1.0, 1.0]})
            assert sess.run([opt.scale, opt.good_steps]) == [2.0, 1]
            sess.run(train, {x: [1.0, 1.0, 1.0]})   # the period's second finite step doubles it
            assert sess.run([opt.scale, opt.good_steps]) == [4.0, 0]
            for _ in range(5):
                sess.run(train, {x: [np.inf, 1.0, 1.0]})
            assert sess.run(opt.scale) == 1.0      # never below 1


def test_train_op_with_loss_scaling_keeps_its_scale_out_of_the_model_checkpoint():
    with tf.Graph().as_default():
        x = tf1.placeholder(tf.float32, [None, 4])
        w = tf1.get_variable('w', [4, 2])
        loss = tf.reduce_mean(tf.square(tf.matmul(x, w)))
        tf1.add_to_collection('losses', loss)
        step = tf1.train.get_or_create_global_step()
        train, saved, averages = optimizers.build_train_op(loss, step, 'ADAM', 0.1, 0.999, tf1.global_variables(),
                                                           loss_scaling=True)
        summaries = tf1.summary.merge_all()
        names = sorted(v.op.name for v in saved)
        assert names == ['w', 'w/ExponentialMovingAverage']
        assert {'LossScale/loss_scale', 'LossScale/good_steps'} <= {v.op.name for v in tf1.global_variables()}
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run([train, summaries], {x: np.full((2, 4), np.inf)})   # the gradient histograms take a skipped step
            assert sess.run(step) == 1 and sess.run(tf1.get_default_graph().get_tensor_by_name(
                'LossScale/loss_scale:0')) == mixed_precision.INITIAL_SCALE / 2
            value = sess.run(w)
            sess.run(train, {x: np.ones((2, 4))})
            assert not np.array_equal(sess.run(w), value)
