"""The graph a TensorFlow model runs in at bf16: frozen, with its batch norms folded into the
convolutions (model_freeze.fold_batch_norms), so oneDNN's bf16 rewrite fuses each convolution with
its bias and ReLU (it does not fuse them with a batch norm between). runtimes.open_model runs this
graph whenever the precision resolves to bf16; fp32 runs the model as loaded.

A checkpoint folder is frozen straight from its files (freeze_checkpoint: its meta graph imported
into a graph of its own, each variable the embeddings need made the checkpoint's value, read by
name): no restore and no session to convert, seconds less than loading it into a session first.
A `.pb`, or a graph with resource variables, is loaded into an fp32 session and frozen from it.
"""
import os

from facenet_tf.errors import FaceNetError, first_line
from facenet_tf.model_freeze import folded_embedding_graph, freeze_session, freeze_with_values
from facenet_tf.model_io import (AVERAGE_SUFFIX, check_tensors, get_model_filenames, load_for_inference,
                                 read_meta_graph, screen_graph)
from facenet_tf.tf_setup import configure

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1


def freeze_checkpoint(model, output_names=('embeddings',), use_moving_averages=False):
    """The frozen inference GraphDef of a checkpoint folder (model_freeze.freeze_with_values), made
    without a session: the meta graph is imported into a graph of its own and its variables become
    the checkpoint's values, read by name (their moving averages with use_moving_averages, as
    averages_saver picks them). Faster than restoring into a session and freezing it (no restore
    and no conversion run). None when the graph holds resource variables (freeze a session then)."""
    model_exp = os.path.expanduser(model)
    meta_file, ckpt_file = get_model_filenames(model_exp)
    meta_path = os.path.join(model_exp, meta_file)
    meta = read_meta_graph(model_exp, meta_file)
    screen_graph(meta.graph_def, meta_path, saver_def=meta.saver_def if meta.HasField('saver_def') else None)
    graph_def = meta.graph_def
    for node in graph_def.node:
        node.device = ''
    checkpoint = os.path.join(model_exp, ckpt_file)
    try:
        reader = tf.train.load_checkpoint(checkpoint)
        stored = reader.get_variable_to_dtype_map()
    except (tf.errors.OpError, ValueError) as e:
        raise FaceNetError('cannot read %s from %s: %s' % (ckpt_file, model, first_line(e)))
    if use_moving_averages and not any(name.endswith(AVERAGE_SUFFIX) for name in stored):
        raise FaceNetError('%s holds no moving averages of its variables' % model)

    def read(name):
        key = name + AVERAGE_SUFFIX if use_moving_averages and name + AVERAGE_SUFFIX in stored else name
        if key not in stored:
            raise FaceNetError('cannot restore %s from %s: it has no variable %s' % (ckpt_file, model, key))
        try:
            return reader.get_tensor(key)
        except (tf.errors.OpError, ValueError) as e:
            raise FaceNetError('cannot restore %s from %s: %s' % (ckpt_file, model, first_line(e)))

    graph = tf1.Graph()
    with graph.as_default():
        input_map = ({'phase_train:0': tf.constant(False)}
                     if any(n.name == 'phase_train' for n in graph_def.node) else None)
        try:
            tf1.import_graph_def(graph_def, input_map=input_map, name='')
        except (ValueError, TypeError, KeyError, tf.errors.OpError) as e:
            raise FaceNetError('cannot import %s: %s' % (meta_path, first_line(e)))
        check_tensors(graph, model)
        return freeze_with_values(graph, read, output_names)


def folded_graph(path, session_config, use_moving_averages=False):
    """(GraphDef, count of folded batch norms) of the model at `path` (a .pb or checkpoint folder)
    frozen to its embeddings and folded; `session_config`: the settings of the fp32 session a model
    is loaded into when it is not frozen from its files (the user's device settings)."""
    frozen = freeze_checkpoint(path, use_moving_averages=use_moving_averages) if os.path.isdir(path) else None
    if frozen is None:
        graph = tf1.Graph()
        with tf1.Session(graph=graph, config=session_config) as sess:
            with graph.as_default():
                load_for_inference(path, sess, use_moving_averages)
            frozen = freeze_session(sess, ('embeddings',))
    return folded_embedding_graph(frozen)
