"""Batch norms folded into convolutions (model_freeze.fold_batch_norms): the graph the tools run in
bf16 gives the classic embeddings in fp32, and only a convolution's own inference batch norm folds."""
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import lfw_refmodel
from facenet_tf import embedding, inference_graph, model_freeze, model_io, runtimes, tf_setup
from facenet_tf.errors import FaceNetError

tf1 = tf.compat.v1
BATCH_NORMS = model_freeze.BATCH_NORM_OPS


def _reference_files(reference_dir):
    crops = os.path.join(reference_dir, 'embeddings', 'crops')
    with open(os.path.join(reference_dir, 'embeddings', 'seed1_files.txt')) as f:
        return [os.path.join(crops, line.strip()) for line in f if line.strip()]


def _session_of(graph_def, precision='fp32'):
    graph = tf1.Graph()
    with graph.as_default():
        tf1.import_graph_def(graph_def, name='')
    return tf1.Session(graph=graph, config=tf_setup.session_config(precision))


def test_folded_checkpoint_gives_the_classic_embeddings(reference_dir, ref_checkpoint):
    with tf1.Graph().as_default(), tf1.Session() as sess:
        embedding.load_for_inference(ref_checkpoint, sess)
        from_session = model_freeze.freeze_session(sess, ('embeddings',))
    from_files = inference_graph.freeze_checkpoint(ref_checkpoint)   # no session: the checkpoint read by name
    assert _values(from_files) == _values(from_session)
    graph_def, folded = model_freeze.folded_embedding_graph(from_files)
    kinds = [node.op for node in graph_def.node]
    # every convolution with a batch norm; the bottleneck's (after a MatMul) stays
    assert folded == 111 and kinds.count('Conv2D') == 132
    assert sum(kind in BATCH_NORMS for kind in kinds) == 1
    with _session_of(graph_def) as sess:
        emb = embedding.embed(sess, _reference_files(reference_dir), 160, 8, False, False)
    np.testing.assert_allclose(emb, lfw_refmodel.reference_embeddings(reference_dir, 'pipe_standardization'),
                               rtol=0, atol=1e-5)


def _values(graph_def):
    """{name: bytes} of the float constants of a frozen graph."""
    return {node.name: node.attr['value'].tensor.SerializeToString() for node in graph_def.node
            if node.op == 'Const' and node.attr['dtype'].type == tf.float32.as_datatype_enum}


def _rewritten_checkpoint(source, target, change):
    """A copy of checkpoint folder `source` in `target` whose checkpoint holds change(values)
    ({name: array}) instead of its variables, under the same file names."""
    shutil.copytree(source, target)
    meta_file, ckpt_file = model_io.get_model_filenames(target)
    reader = tf.train.load_checkpoint(os.path.join(source, ckpt_file))
    values = change({name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()})
    for name in os.listdir(target):
        if name.startswith(ckpt_file + '.'):
            os.remove(os.path.join(target, name))
    with tf1.Graph().as_default(), tf1.Session() as sess:
        variables = [tf1.Variable(value, name=name) for name, value in values.items()]
        sess.run(tf1.global_variables_initializer())
        tf1.train.Saver(variables).save(sess, os.path.join(target, ckpt_file), write_meta_graph=False,
                                        write_state=False)
    return target


def test_a_checkpoint_that_does_not_fit_its_graph_is_one_line(ref_checkpoint, tmp_path):
    weights = 'InceptionResnetV1/Conv2d_1a_3x3/weights'
    missing = _rewritten_checkpoint(ref_checkpoint, str(tmp_path / 'missing'),
                                    lambda values: {k: v for k, v in values.items() if k != weights})
    with pytest.raises(FaceNetError, match='has no variable %s$' % weights):
        inference_graph.freeze_checkpoint(missing)
    reshaped = _rewritten_checkpoint(ref_checkpoint, str(tmp_path / 'reshaped'),
                                     lambda values: dict(values, **{weights: values[weights][:2]}))
    with pytest.raises(FaceNetError, match='variable %s: the checkpoint holds float32 \\[2, 3, 3, 32\\]' % weights):
        runtimes.open_model(reshaped, precision='bf16')
    with pytest.raises(FaceNetError, match='holds no moving averages'):
        inference_graph.freeze_checkpoint(ref_checkpoint, use_moving_averages=True)


def test_a_bf16_model_runs_folded(reference_dir, ref_pb):
    with runtimes.open_model(ref_pb, precision='bf16') as runner:
        kinds = [op.type for op in runner.sess.graph.get_operations()]
        emb = embedding.embed(runner, _reference_files(reference_dir), 160, 8, False, False)
    assert sum(kind in BATCH_NORMS for kind in kinds) == 1 and kinds.count('BiasAdd') == 132
    cosine = np.sum(emb * lfw_refmodel.reference_embeddings(reference_dir, 'pipe_standardization'), axis=1)
    assert cosine.min() > 0.999
    with runtimes.open_model(ref_pb, precision='fp32') as runner:   # fp32: the graph as loaded
        assert sum(op.type in BATCH_NORMS for op in runner.sess.graph.get_operations()) > 100


def _batch_norm(x, channels, seed, is_training=False):
    rng = np.random.default_rng(seed)
    params = [tf.constant(rng.uniform(0.5, 1.5, channels).astype(np.float32)),
              tf.constant(rng.normal(0, 0.1, channels).astype(np.float32))]
    if is_training:
        return tf1.nn.fused_batch_norm(x, *params, epsilon=0.001, is_training=True)[0]
    return tf1.nn.fused_batch_norm(x, *params, mean=tf.constant(rng.normal(0, 0.1, channels).astype(np.float32)),
                                   variance=tf.constant(rng.uniform(0.5, 2, channels).astype(np.float32)),
                                   epsilon=0.001, is_training=False)[0]


def test_only_a_convolutions_own_inference_batch_norm_folds():
    rng = np.random.default_rng(0)
    with tf1.Graph().as_default() as graph:
        images = tf1.placeholder(tf.float32, [None, 16, 16, 3], name='input')

        def conv(x, channels):
            kernel = rng.normal(0, 0.3, (3, 3, int(x.shape[-1]), channels)).astype(np.float32)
            return tf.nn.conv2d(x, tf.constant(kernel), 1, 'SAME')

        own = tf.nn.relu(_batch_norm(conv(images, 4), 4, 1))          # folds
        shared_conv = conv(own, 4)
        shared = _batch_norm(shared_conv, 4, 2) + shared_conv          # the conv has another user: stays
        training = _batch_norm(conv(shared, 4), 4, 3, is_training=True)  # batch moments: stays
        tf.identity(tf.reduce_mean(training, [1, 2]), name='embeddings')
    graph_def = graph.as_graph_def()
    folded_def, folded = model_freeze.fold_batch_norms(graph_def)
    assert folded == 1
    assert sum(node.op in BATCH_NORMS for node in folded_def.node) == 2
    batch = rng.uniform(-1, 1, (5, 16, 16, 3)).astype(np.float32)
    outputs = []
    for graph_def in (graph_def, folded_def):
        with _session_of(graph_def) as sess:
            outputs.append(sess.run('embeddings:0', {'input:0': batch}))
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=0, atol=1e-5)
