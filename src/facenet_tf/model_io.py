"""Model files: loading a frozen `.pb` or a checkpoint folder, saving in the classic layout, freezing a
checkpoint folder to a `.pb` and converting a model to TensorFlow Lite.

The classic folder layout is `model-<subdir>.meta` (written once) plus `model-<subdir>.ckpt-<step>`
checkpoints; a frozen model is a single GraphDef `.pb`. Tensor contract of every loaded model:
`input:0` (float [N,H,W,3]), `phase_train:0` (bool), `embeddings:0` (L2-normalised).
`load_for_inference` is how every tool loads a model to embed images; `load_model` is the classic
facenet.load_model.

Model files come from anywhere, so every GraphDef and meta graph is screened before it is imported
(facenet_tf.model_screen: inference ops only, bounded constants; the Saver may restore only the
checkpoint this module names), and a checkpoint folder's files must lie inside it. Freezing a loaded
graph into a GraphDef is facenet_tf.model_freeze.
"""
import contextlib
import os
import re
import stat
import sys
import time

from facenet_tf.errors import FaceNetError, first_line
from facenet_tf.files import write_atomic
from facenet_tf.model_freeze import embedding_subgraph, freeze_session, write_graph_def
from facenet_tf.model_screen import screen_graph
from facenet_tf.tf_setup import configure

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1

REQUIRED_TENSORS = ('input:0', 'embeddings:0')
_CKPT_RE = re.compile(r'^(model-[\w\- ]+\.ckpt-(\d+))')


def model_not_found(model):
    """The error for a model path that is neither a file nor a folder."""
    return FaceNetError('model not found: %s (give a frozen .pb file or a checkpoint folder)' % model)


def find_model(model):
    """`model` with ~ expanded; FaceNetError when it is neither a file (.pb, .tflite, .onnx) nor a
    folder, or is a file of another kind (wrong_model_file)."""
    path = os.path.expanduser(model)
    if not (os.path.isfile(path) or os.path.isdir(path)):
        raise model_not_found(model)
    if os.path.isfile(path) and model_kind(path) == TENSORFLOW:
        check_model_file(path)
    return path


TENSORFLOW, TFLITE, ONNX = 'tensorflow', 'tflite', 'onnx'


def model_kind(path):
    """TENSORFLOW (a folder or a .pb), TFLITE (the `TFL3` file identifier) or ONNX (a file named
    .onnx): which runtime reads it (facenet_tf.runtimes)."""
    if not os.path.isfile(path):
        return TENSORFLOW
    with open(path, 'rb') as f:
        head = f.read(8)
    if head[4:8] == b'TFL3':
        return TFLITE
    return ONNX if path.lower().endswith('.onnx') else TENSORFLOW


_CHECKPOINT_PART_RE = re.compile(r'(\.meta|\.index|\.data-\d+-of-\d+)$|^checkpoint$')
_IMPORT = 'import it first: facenet-import-model %s FOLDER (python src/import_keras_model.py), then give FOLDER'


def wrong_model_file(path):
    """The message for a model file that is not a frozen GraphDef, told by its first bytes (HDF5,
    zip, TensorFlow Lite) and its name (.h5, .pt, .tflite, .zip, a checkpoint folder's files), or
    None. A misnamed file is told by its content."""
    with open(path, 'rb') as f:
        head = f.read(8)
    name = os.path.basename(path)
    lower = name.lower()
    if head == b'\x89HDF\r\n\x1a\n' or (lower.endswith(('.h5', '.hdf5')) and not head.startswith(b'PK')):
        return '%s is a Keras HDF5 file, not a TensorFlow model: %s' % (path, _IMPORT % path)
    if head.startswith(b'PK\x03\x04') or head.startswith(b'PK\x05\x06'):
        if lower.endswith(('.pt', '.pth')) or _is_torch_zip(path):
            return '%s is a PyTorch file, not a TensorFlow model: %s' % (path, _IMPORT % path)
        return '%s is a zip archive: unzip it first, then give the .pb or model folder it holds' % path
    if head[4:8] == b'TFL3' or lower.endswith('.tflite'):
        return ('%s is a TensorFlow Lite model, which only the embedding tools read; '
                'give the .pb or model folder it was exported from' % path)
    if lower.endswith(('.pt', '.pth')):
        return '%s is a PyTorch file, not a TensorFlow model: %s' % (path, _IMPORT % path)
    if _CHECKPOINT_PART_RE.search(name):
        return ('%s is one file of a checkpoint folder: give the folder that holds it: %s'
                % (path, os.path.dirname(os.path.abspath(path))))
    return None


def _is_torch_zip(path):
    """Whether a zip archive is a PyTorch save (it holds `<name>/data.pkl`)."""
    import zipfile
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith('/data.pkl') for n in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def check_model_file(path):
    """FaceNetError with wrong_model_file's message when the model file is of another kind."""
    message = wrong_model_file(path)
    if message:
        raise FaceNetError(message)


def get_model_filenames(model_dir):
    """(meta_file, ckpt_file) basenames of a checkpoint folder: the one `.meta`, and the checkpoint
    named by the `checkpoint` file, else the highest `model-*.ckpt-N`."""
    if not os.path.isdir(model_dir):
        raise FaceNetError('model folder not found: %s' % model_dir)
    files = os.listdir(model_dir)
    meta_files = sorted(f for f in files if f.endswith('.meta'))
    if not meta_files:
        raise FaceNetError('no .meta file in the model folder %s' % model_dir)
    if len(meta_files) > 1:
        raise FaceNetError('more than one .meta file in the model folder %s (%s)'
                        % (model_dir, ', '.join(meta_files)))
    _check_inside(model_dir, meta_files[0])
    ckpt_file = _named_checkpoint(model_dir)
    if ckpt_file is None:
        best_step = -1
        for f in files:
            m = _CKPT_RE.match(f)
            if m is not None and int(m.group(2)) > best_step:
                best_step, ckpt_file = int(m.group(2)), m.group(1)
    if ckpt_file is None:
        raise FaceNetError('no checkpoint (model-*.ckpt-N) in the model folder %s' % model_dir)
    for f in files:
        if f.startswith(ckpt_file + '.'):
            _check_inside(model_dir, f)
    return meta_files[0], ckpt_file


def _named_checkpoint(model_dir):
    """The checkpoint that the folder's `checkpoint` file names, as a file name in the folder (None
    without one, or when it names a checkpoint of this folder since deleted). A path elsewhere (a
    folder trained on another machine keeps absolute paths) stands for its file name in this folder;
    when no such file is here the path is an error, never followed."""
    path = os.path.join(model_dir, 'checkpoint')
    if not os.path.lexists(path):
        return None
    _check_inside(model_dir, 'checkpoint')
    ckpt = tf1.train.get_checkpoint_state(model_dir)
    if not (ckpt and ckpt.model_checkpoint_path):
        return None
    named = ckpt.model_checkpoint_path
    ckpt_file = os.path.basename(named)
    if ckpt_file not in ('', '.', '..') and _checkpoint_exists(os.path.join(model_dir, ckpt_file)):
        return ckpt_file
    folder = os.path.abspath(model_dir)
    if os.path.commonpath([os.path.abspath(os.path.join(model_dir, named)), folder]) != folder:
        raise FaceNetError('%s: model_checkpoint_path %r is outside the model folder (only a checkpoint '
                           'inside it is restored)' % (path, named))
    return None   # a checkpoint of this folder since deleted: the highest one present is used


def _check_inside(model_dir, name):
    """Refuse a model-folder entry that is not a regular file inside the folder (a link leading
    out of it, a FIFO, a folder)."""
    path = os.path.join(model_dir, name)
    real, folder = os.path.realpath(path), os.path.realpath(model_dir)
    if os.path.commonpath([real, folder]) != folder:
        raise FaceNetError('%s: links outside the model folder %s' % (path, model_dir))
    if not stat.S_ISREG(os.stat(real).st_mode):
        raise FaceNetError('%s: not a regular file' % path)


def _checkpoint_exists(prefix):
    return os.path.exists(prefix + '.index') or os.path.exists(prefix)


def read_meta_graph(model_dir, meta_file):
    """The parsed MetaGraphDef of `meta_file` in model_dir (one-line error when it is not one)."""
    path = os.path.join(model_dir, meta_file)
    return _parse_proto(path, tf1.MetaGraphDef(), 'a TensorFlow meta graph')


def _parse_proto(path, proto, what):
    """Fill `proto` from the binary file `path`; FaceNetError '<path> is not <what>: <reason>'."""
    with open(path, 'rb') as f:
        data = f.read()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # protobuf raises its own DecodeError type
        raise FaceNetError('%s is not %s: %s' % (path, what, type(e).__name__))
    return proto


AVERAGE_SUFFIX = '/ExponentialMovingAverage'


def load_model(model, input_map=None, session=None, use_moving_averages=False):
    """Load a frozen `.pb` (into the default graph) or a checkpoint folder (restored into `session`,
    by default the default session), as the classic facenet.load_model. With use_moving_averages each
    variable of a checkpoint gets its moving average (as the training scripts keep them) instead."""
    model_exp = os.path.expanduser(model)
    if os.path.isfile(model_exp):
        import_frozen_graph(read_graph_def(model_exp), model, input_map, use_moving_averages)
    elif os.path.isdir(model_exp):
        meta_file, ckpt_file = get_model_filenames(model_exp)
        sess = session or tf1.get_default_session()
        if sess is None:
            raise FaceNetError('load_model needs a session to restore a checkpoint folder')
        meta_path = os.path.join(model_exp, meta_file)
        meta = read_meta_graph(model_exp, meta_file)
        screen_graph(meta.graph_def, meta_path, saver_def=meta.saver_def if meta.HasField('saver_def') else None)
        try:
            saver = tf1.train.import_meta_graph(meta, input_map=input_map, clear_devices=True)
            if saver is None:
                raise FaceNetError('%s has no Saver to restore its checkpoint' % meta_path)
            if use_moving_averages:
                saver = averages_saver(os.path.join(model_exp, ckpt_file), model)
            saver.restore(sess, os.path.join(model_exp, ckpt_file))
        except (tf.errors.OpError, ValueError, KeyError, TypeError) as e:
            raise FaceNetError('cannot restore %s from %s: %s'
                            % (ckpt_file, model, first_line(e)))
    else:
        raise model_not_found(model)
    check_tensors(tf1.get_default_graph(), model)


def one_set_of_weights(model):
    """The error for moving averages asked of a frozen graph, which holds one set of weights."""
    return FaceNetError('%s is a frozen graph: it holds one set of weights (freeze the checkpoint folder '
                        'with --use_moving_averages instead)' % model)


def import_frozen_graph(graph_def, model, input_map=None, use_moving_averages=False):
    """Import the parsed frozen graph of file `model` into the default graph. It holds one set of
    weights: asking it for moving averages is an error."""
    if use_moving_averages:
        raise one_set_of_weights(model)
    screen_graph(graph_def, model)
    for node in graph_def.node:
        node.device = ''   # a file's device names (another machine's GPUs or jobs) are not placements here
    try:
        tf1.import_graph_def(graph_def, input_map=input_map, name='')
    except (ValueError, TypeError, KeyError, tf.errors.OpError) as e:
        raise FaceNetError('cannot import %s: %s' % (model, first_line(e)))


def averages_saver(checkpoint, model):
    """A Saver restoring each variable of the default graph from its moving average in `checkpoint`
    (from itself when it has none, as the batch-norm statistics of published checkpoints). Variables
    the checkpoint lacks (optimizer slots) and the averages' own variables are not restored."""
    names = tf.train.load_checkpoint(checkpoint).get_variable_to_shape_map()
    var_list = {}
    for var in tf1.global_variables():
        name = var.op.name
        if name.endswith(AVERAGE_SUFFIX):
            continue
        if name + AVERAGE_SUFFIX in names:
            var_list[name + AVERAGE_SUFFIX] = var
        elif name in names:
            var_list[name] = var
    if not any(key.endswith(AVERAGE_SUFFIX) for key in var_list):
        raise FaceNetError('%s holds no moving averages of its variables' % model)
    return tf1.train.Saver(var_list)


def read_graph_def(path):
    """Parse a binary GraphDef file, with a one-line error when it is not one."""
    if not os.path.isfile(path):
        raise FaceNetError('%s is not a frozen TensorFlow graph (.pb): not a regular file' % path)
    check_model_file(path)
    return _parse_proto(path, tf1.GraphDef(), 'a frozen TensorFlow graph (.pb)')


def check_tensors(graph, model, names=REQUIRED_TENSORS):
    """Raise FaceNetError naming any contract tensor the loaded model lacks."""
    missing = []
    for name in names:
        try:
            graph.get_tensor_by_name(name)
        except (KeyError, ValueError):
            missing.append(name)
    if missing:
        raise FaceNetError('model %s has no tensor %s' % (model, ', '.join(missing)))


def _has_phase_train(model):
    """Whether the model file (.pb) or checkpoint folder (.meta) has a `phase_train` node, and the
    parsed GraphDef of a .pb (None for a folder)."""
    if os.path.isfile(model):
        graph_def = read_graph_def(model)
        return any(n.name == 'phase_train' for n in graph_def.node), graph_def
    if os.path.isdir(model):
        meta_file, _ = get_model_filenames(model)
        meta = read_meta_graph(model, meta_file)
        return any(n.name == 'phase_train' for n in meta.graph_def.node), None
    raise model_not_found(model)


def load_for_inference(model, session, use_moving_averages=False):
    """Load a .pb or checkpoint folder into session.graph (the default graph) for inference, with
    `phase_train` bound to a constant False: the optimiser then drops the training branches of batch
    norm. use_moving_averages: a checkpoint's moving averages instead of its variables. The loader
    of every tool that embeds images (compare, validate_on_lfw, classifier, benchmarks)."""
    model = os.path.expanduser(model)
    has_phase_train, graph_def = _has_phase_train(model)
    input_map = {'phase_train:0': tf.constant(False)} if has_phase_train else None
    if graph_def is not None:
        import_frozen_graph(graph_def, model, input_map, use_moving_averages)
        check_tensors(session.graph, model)
    else:
        load_model(model, input_map=input_map, session=session, use_moving_averages=use_moving_averages)


def model_tensors(graph):
    """(input, phase_train or None, embeddings) tensors of a loaded model graph."""
    try:
        images = graph.get_tensor_by_name('input:0')
        embeddings = graph.get_tensor_by_name('embeddings:0')
    except KeyError as e:
        raise FaceNetError('the model has no tensor %s' % e)
    try:
        phase_train = graph.get_tensor_by_name('phase_train:0')
    except KeyError:
        phase_train = None
    return images, phase_train, embeddings


def save_variables_and_metagraph(sess, saver, summary_writer, model_dir, model_name, step):
    """Save `model-<name>.ckpt-<step>`, and `model-<name>.meta` the first time (classic layout).
    Returns (seconds saving variables, seconds writing the meta graph)."""
    start = time.time()
    checkpoint_path = os.path.join(model_dir, 'model-%s.ckpt' % model_name)
    saver.save(sess, checkpoint_path, global_step=step, write_meta_graph=False)
    save_time_variables = time.time() - start
    save_time_metagraph = 0.0
    metagraph_filename = os.path.join(model_dir, 'model-%s.meta' % model_name)
    if not os.path.exists(metagraph_filename):
        start = time.time()
        saver.export_meta_graph(metagraph_filename)
        save_time_metagraph = time.time() - start
    if summary_writer is not None:
        summary = tf1.Summary()
        summary.value.add(tag='time/save_variables', simple_value=save_time_variables)
        summary.value.add(tag='time/save_metagraph', simple_value=save_time_metagraph)
        summary_writer.add_summary(summary, step)
    return save_time_variables, save_time_metagraph


def freeze_model(model_dir, output_file, use_moving_averages=False):
    """Freeze a checkpoint folder (its variables, or their moving averages) into `output_file`;
    returns the number of nodes written."""
    with tf1.Graph().as_default() as graph:
        with tf1.Session(graph=graph) as sess:
            load_model(model_dir, session=sess, use_moving_averages=use_moving_averages)
            frozen = freeze_session(sess)
    write_graph_def(frozen, output_file)
    return len(frozen.node)


QUANTIZATIONS = ('none', 'fp16', 'dynamic', 'int8')


def frozen_embedding_graph(model, image_size=160, use_moving_averages=False):
    """The screened frozen GraphDef computing `embeddings` from an `input` placeholder of
    [None, image_size, image_size, 3] (any batch), from a `.pb` or a checkpoint folder (frozen in
    memory, with its moving averages when asked): what the TensorFlow Lite and ONNX exports convert."""
    model_exp = os.path.expanduser(model)
    if os.path.isdir(model_exp):
        with tf1.Graph().as_default() as graph:
            with tf1.Session(graph=graph) as sess:
                load_model(model_exp, session=sess, use_moving_averages=use_moving_averages)
                graph_def = freeze_session(sess)
    elif os.path.isfile(model_exp):
        if use_moving_averages:
            raise one_set_of_weights(model)
        graph_def = read_graph_def(model_exp)
        screen_graph(graph_def, model)
    else:
        raise model_not_found(model)
    graph_def = embedding_subgraph(graph_def, model, image_size)
    for node in graph_def.node:
        if node.name == 'input':
            node.attr['shape'].shape.CopyFrom(tf.TensorShape([None, image_size, image_size, 3]).as_proto())
    return graph_def


@contextlib.contextmanager
def quiet_stderr():
    """File descriptor 2 pointed at /dev/null: TensorFlow Lite's converter and interpreter print
    lines from C++ (quantizer settings, the CPU delegate) that would break a tool's one-line output."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def export_tflite(model, output_file, image_size=160, quantize='none', representative=None):
    """Convert a frozen `.pb` or a checkpoint folder to a TensorFlow Lite flatbuffer with input
    `input` [N, image_size, image_size, 3] (any batch: the interpreter resizes it) and output
    `embeddings`, written atomically; returns its size. quantize: 'none' (fp32), 'fp16' (weights
    stored as float16), 'dynamic' (int8 weights, activations quantized at run time) or 'int8'
    (full integer with float input and output, calibrated on `representative`, standardised crops
    [n, S, S, 3]: export_tflite.representative_crops)."""
    if quantize not in QUANTIZATIONS:
        raise FaceNetError('quantize must be one of %s, got %r' % (', '.join(QUANTIZATIONS), quantize))
    if quantize == 'int8' and (representative is None or not len(representative)):
        raise FaceNetError('an int8 export needs representative crops (--representative DIR)')
    graph_def = frozen_embedding_graph(model, image_size)
    with tf1.Graph().as_default() as graph:
        import_frozen_graph(graph_def, model)
        try:
            converter = tf1.lite.TFLiteConverter(graph_def, [graph.get_tensor_by_name('input:0')],
                                                 [graph.get_tensor_by_name('embeddings:0')])
            if quantize != 'none':
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if quantize == 'fp16':
                converter.target_spec.supported_types = [tf.float16]
            elif quantize == 'int8':
                converter.representative_dataset = lambda: ([crop[None]] for crop in representative)
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            with quiet_stderr():
                flatbuffer = converter.convert()
        except Exception as e:  # the converter raises several unrelated types
            raise FaceNetError('TensorFlow Lite conversion failed: %s' % str(e).strip().splitlines()[0])
    write_atomic(output_file, flatbuffer)
    return len(flatbuffer)
