"""One way to run an embedding model, whatever its file: `open_model(model, args)` returns an
Embedder whose `embed(batch)` maps standardised float32 crops [N, S, S, 3] to embeddings [N, D].

Three backends, chosen by the model file:
- a frozen `.pb` or a checkpoint folder: a TensorFlow session (`SessionEmbedder`), the classic path,
  loaded by model_io.load_for_inference; its numbers are those of a plain `sess.run`; with
  backend 'onnx' (`--backend onnx`) converted to ONNX once (onnx_cache) and run as an `.onnx` file;
- a TensorFlow Lite flatbuffer (`TFL3` identifier): tf.lite.Interpreter (`LiteEmbedder`), resized to
  each batch when the file was exported with a dynamic batch, one crop at a time otherwise;
- an `.onnx` file: onnxruntime's CPU provider (`OnnxEmbedder`), an optional dependency.

The library functions that take a session (embedding.embed, faces.embed_faces, FacePipeline) take an
Embedder too: `as_embedder` wraps a session in place.

A `.tflite` or `.onnx` file is untrusted like any model file (docs/security.md): at most
MAX_MODEL_BYTES, its identifier checked before a runtime sees it, TensorFlow Lite files without
custom operators (the `Flex` ones would run TensorFlow kernels such as file reads), ONNX files with
external data only as plain files inside their own folder, and one input [N, S, S, 3] float32 and
one output [N, D] float32, else a one-line FaceNetError.
"""
import os
import stat
import threading
import warnings

import numpy as np

from facenet_tf.errors import FaceNetError, first_line
from facenet_tf.inference_graph import folded_graph
from facenet_tf.tf_setup import BACKENDS
from facenet_tf.model_io import (ONNX, TENSORFLOW, TFLITE, load_for_inference,  # noqa: F401 (the kinds)
                                 model_kind, model_tensors, quiet_stderr)

MAX_MODEL_BYTES = 2 ** 31 - 1     # 2 GiB: the protobuf and flatbuffer limit of both formats
ONNX_INSTALL = 'pip install onnxruntime onnx (or the extra: pip install facenet-tf1compat[onnx])'


class Embedder(object):
    """Embeddings of standardised crops: `embed(float32 [N, S, S, 3]) -> float32 [N, D]`;
    image_size and embedding_size (None when the model does not say), close(), a context manager.
    `arithmetic` names what computes the embeddings (a TensorFlow session's precision, 'fp32' or
    'bf16', else the runtime): recognize's gallery cache is keyed by it."""
    kind = None
    arithmetic = None
    image_size = None
    embedding_size = None

    def embed(self, batch):
        raise NotImplementedError

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SessionEmbedder(Embedder):
    """A TensorFlow session holding a loaded model (input:0, optional phase_train:0, embeddings:0)."""
    kind = TENSORFLOW

    def __init__(self, sess, owned=False, arithmetic='fp32'):
        self.sess, self.owned, self.arithmetic = sess, owned, arithmetic
        self.images, self.phase_train, self.embeddings = model_tensors(sess.graph)
        shape = self.images.shape.as_list() if self.images.shape.rank == 4 else [None] * 4
        self.image_size = shape[1]
        self.embedding_size = self.embeddings.shape.as_list()[-1] if self.embeddings.shape.rank else None

    def embed(self, batch):
        feed = {self.images: batch}
        if self.phase_train is not None:
            feed[self.phase_train] = False
        return self.sess.run(self.embeddings, feed)

    def close(self):
        if self.owned:
            self.sess.close()


def as_embedder(model):
    """An Embedder as it is, or a TensorFlow session holding a loaded model wrapped as one."""
    return model if isinstance(model, Embedder) else SessionEmbedder(model)


def _threads(args, threads):
    """Threads of a runtime: `threads`, else the tool's --intra_op_threads, else all cores (0)."""
    if threads is None:
        threads = getattr(args, 'intra_op_threads', 0) or 0
    return int(threads)


def open_model(model, args=None, precision=None, use_moving_averages=False, threads=None, image_size=None,
               backend=None):
    """An Embedder for a model file or folder, as the tools load it: TensorFlow models in a session of
    their own graph from the tool's flags (tf_setup.inference_session; `precision` overrides
    --precision), .tflite and .onnx files with `threads` (default --intra_op_threads; 0: all cores).
    image_size: the crop size the caller feeds, checked against a .tflite/.onnx model's input.
    backend (default --backend, else 'tf'): 'onnx' runs a .pb or checkpoint folder by onnxruntime
    through its conversion cached once (_open_converted); .onnx files run there whatever the backend."""
    path = os.path.expanduser(model)
    kind = model_kind(path)
    backend = backend or getattr(args, 'backend', None) or 'tf'
    if backend not in BACKENDS:
        raise FaceNetError('unknown backend %r (one of %s)' % (backend, ', '.join(BACKENDS)))
    if backend == 'onnx' and kind == TFLITE:
        raise FaceNetError('%s is a TensorFlow Lite model, which runs in its own interpreter: --backend onnx '
                           'takes a .pb, a checkpoint folder or an .onnx file' % model)
    if kind == TENSORFLOW and backend == 'onnx':
        return _open_converted(model, path, args, precision, use_moving_averages, threads, image_size)
    if kind == TENSORFLOW:
        return _open_tensorflow(path, args, precision, use_moving_averages)
    wanted = precision or getattr(args, 'precision', 'fp32') or 'fp32'
    if wanted not in ('fp32', 'auto'):   # auto: an exported file runs at its own precision
        raise FaceNetError('%s: --precision %s applies to TensorFlow models; a %s file runs at the precision '
                           'it was exported with' % (model, wanted, 'TensorFlow Lite' if kind == TFLITE else 'ONNX'))
    if use_moving_averages:
        raise FaceNetError('%s holds one set of weights: --use_moving_averages applies to checkpoint folders' % model)
    data = _read_model_file(path, model)
    embedder = (LiteEmbedder if kind == TFLITE else OnnxEmbedder)(data, path, model, _threads(args, threads))
    if image_size and embedder.image_size != image_size:
        embedder.close()
        raise FaceNetError('%s takes %dx%d crops, not %dx%d (give --image_size %d)'
                           % (model, embedder.image_size, embedder.image_size, image_size, image_size,
                              embedder.image_size))
    return embedder


def _open_converted(model, path, args, precision, use_moving_averages, threads, image_size):
    """An OnnxEmbedder of a .pb or checkpoint folder converted to ONNX once (onnx_cache.cached_onnx,
    at image_size, else --image_size, else 160). fp32 only: `--precision auto` runs it in fp32 too,
    `--precision bf16` (TensorFlow's oneDNN rewrite) is refused."""
    wanted = precision or getattr(args, 'precision', None) or 'fp32'
    if wanted not in ('fp32', 'auto'):
        raise FaceNetError('%s: --precision %s runs in TensorFlow only (--backend tf); --backend onnx runs the '
                           'model in fp32 (--precision fp32 or auto)' % (model, wanted))
    from facenet_tf.export_onnx import require
    for name in ('tf2onnx', 'onnxruntime', 'onnx'):     # checked before a conversion that could not run
        require(name, '%s: --backend onnx' % model)
    from facenet_tf.onnx_cache import cached_onnx
    size = image_size or getattr(args, 'image_size', None) or 160
    converted = cached_onnx(path, size, use_moving_averages)
    try:
        return OnnxEmbedder(_read_model_file(converted, converted), converted, converted, _threads(args, threads))
    except FaceNetError as e:   # a cached file damaged or replaced since it was written
        raise FaceNetError('%s (the ONNX conversion of %s: delete it to convert again)' % (e, model))


def _open_tensorflow(path, args, precision, use_moving_averages):
    """A SessionEmbedder of a .pb or checkpoint folder. In bf16 the session runs the model frozen with
    its batch norms folded into the convolutions (inference_graph.folded_graph): oneDNN's bf16
    rewrite then fuses each convolution with its bias and ReLU, which it does not do with a batch
    norm between them. fp32 runs the graph as loaded (the classic numbers; grappler fuses it anyway)."""
    from facenet_tf import tf_setup
    from facenet_tf.precision import resolve_precision
    tf1 = tf_setup.configure().compat.v1
    graph = tf1.Graph()
    arithmetic = resolve_precision(precision or getattr(args, 'precision', None) or 'fp32')
    if arithmetic != 'bf16':
        sess = tf_setup.inference_session(args, graph=graph, precision=precision)
        try:
            with graph.as_default():
                load_for_inference(path, sess, use_moving_averages)
            return SessionEmbedder(sess, owned=True, arithmetic=arithmetic)
        except BaseException:
            sess.close()
            raise
    graph_def, _ = folded_graph(path, tf_setup.session_config_from_args(args, precision='fp32'), use_moving_averages)
    graph = tf1.Graph()
    with graph.as_default():
        try:
            tf1.import_graph_def(graph_def, name='')
        except (ValueError, TypeError, KeyError) as e:
            raise FaceNetError('%s: its graph with folded batch norms does not import: %s' % (path, first_line(e)))
    return SessionEmbedder(tf_setup.inference_session(args, graph=graph, precision=precision), owned=True,
                           arithmetic=arithmetic)


def _read_model_file(path, model):
    """The bytes of a regular model file of at most MAX_MODEL_BYTES (size checked before reading)."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise FaceNetError('%s: not a regular file' % model)
    if info.st_size > MAX_MODEL_BYTES:
        raise FaceNetError('%s: %d bytes, more than the %d a model file may hold' % (model, info.st_size, MAX_MODEL_BYTES))
    with open(path, 'rb') as f:
        return f.read(MAX_MODEL_BYTES + 1)


def _check_signature(model, input_shape, input_type, output_shape, output_type):
    """(image_size, embedding_size) of a model whose input is [N, S, S, 3] float32 and output [N, D]
    float32 (N may be any or 1; None or a negative number stands for a free dimension)."""
    def fixed(d):
        return isinstance(d, (int, np.integer)) and d > 0
    ok = (len(input_shape) == 4 and fixed(input_shape[1]) and input_shape[1] == input_shape[2] and input_shape[3] == 3
          and len(output_shape) == 2 and fixed(output_shape[1]) and input_type == 'float32' and output_type == 'float32')
    if not ok:
        raise FaceNetError('%s: the model must map float32 [N, S, S, 3] crops to float32 [N, D] embeddings, '
                           'this one maps %s %s to %s %s' % (model, input_type, list(input_shape), output_type,
                                                           list(output_shape)))
    return int(input_shape[1]), int(output_shape[1])


class LiteEmbedder(Embedder):
    """A TensorFlow Lite model run by tf.lite.Interpreter (its XNNPACK CPU delegate)."""
    kind = TFLITE
    arithmetic = 'tflite'

    def __init__(self, data, path, model, threads=0):
        from facenet_tf.tf_setup import configure
        tf = configure()
        _refuse_custom_ops(data, model)
        try:
            with warnings.catch_warnings(), quiet_stderr():
                warnings.simplefilter('ignore')    # the interpreter's deprecation notice
                self.interpreter = tf.lite.Interpreter(model_content=data, num_threads=threads or os.cpu_count())
                self.interpreter.allocate_tensors()
            inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        except Exception as e:  # the interpreter raises ValueError and RuntimeError
            raise FaceNetError('%s is not a TensorFlow Lite model the interpreter can run: %s' % (model, first_line(e)))
        if len(inputs) != 1 or len(outputs) != 1:
            raise FaceNetError('%s: the model must have one input and one output, it has %d and %d'
                               % (model, len(inputs), len(outputs)))
        self.input, self.output = inputs[0], outputs[0]
        signature = list(self.input.get('shape_signature', self.input['shape']))
        self.image_size, self.embedding_size = _check_signature(
            model, signature, np.dtype(self.input['dtype']).name, list(self.output['shape']),
            np.dtype(self.output['dtype']).name)
        self.dynamic = signature[0] == -1
        self.batch = int(self.input['shape'][0])
        self.model = model
        self.lock = threading.Lock()    # an interpreter runs one call at a time (the API may share it)

    def _run(self, batch):
        n = batch.shape[0]
        if n != self.batch:
            self.interpreter.resize_tensor_input(self.input['index'], [n] + list(batch.shape[1:]))
            self.interpreter.allocate_tensors()
            self.batch = n
        self.interpreter.set_tensor(self.input['index'], batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output['index']).copy()

    def embed(self, batch):
        batch = np.ascontiguousarray(batch, np.float32)
        if not batch.shape[0]:
            return np.zeros((0, self.embedding_size), np.float32)
        try:
            with self.lock:
                if self.dynamic:
                    return self._run(batch)
                return np.concatenate([self._run(batch[k:k + 1]) for k in range(batch.shape[0])])
        except (ValueError, RuntimeError) as e:
            raise FaceNetError('%s: %s' % (self.model, first_line(e)))


def _refuse_custom_ops(data, model):
    """Refuse a TensorFlow Lite file whose operator codes include a custom operator: a `Flex` one runs
    TensorFlow kernels (file reads and writes among them) through the interpreter's Flex delegate."""
    from tensorflow.lite.python import schema_py_generated as schema
    try:
        if len(data) < 8 or not schema.Model.ModelBufferHasIdentifier(data, 0):
            raise ValueError('no TFL3 identifier')
        root = schema.Model.GetRootAsModel(data, 0)
        codes = [root.OperatorCodes(k) for k in range(root.OperatorCodesLength())]
        custom = [c.CustomCode() or b'?' for c in codes
                  if max(c.BuiltinCode(), c.DeprecatedBuiltinCode()) == schema.BuiltinOperator.CUSTOM]
    except Exception:  # a damaged flatbuffer: offsets out of range, wrong types
        raise FaceNetError('%s is not a TensorFlow Lite model: its flatbuffer is damaged or truncated' % model)
    if custom:
        raise FaceNetError('%s uses custom operators (%s), which are not run: only built-in TensorFlow Lite '
                           'operators are' % (model, ', '.join(sorted({c.decode('utf-8', 'replace') for c in custom}))))


class OnnxEmbedder(Embedder):
    """An ONNX model run by onnxruntime's CPU provider."""
    kind = ONNX
    arithmetic = 'onnxruntime'

    def __init__(self, data, path, model, threads=0):
        try:
            import onnxruntime
            import onnx
        except ImportError:
            raise FaceNetError('%s: reading ONNX models needs onnxruntime and onnx: %s' % (model, ONNX_INSTALL))
        proto = onnx.ModelProto()
        try:
            proto.ParseFromString(data)
        except Exception as e:  # protobuf's DecodeError
            raise FaceNetError('%s is not an ONNX model: %s' % (model, type(e).__name__))
        if not proto.ir_version or not len(proto.graph.node):
            raise FaceNetError('%s is not an ONNX model: no graph' % model)
        external = _external_data(proto, path, model)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(path if external else data, options,
                                                        providers=['CPUExecutionProvider'])
        except Exception as e:  # onnxruntime raises its own exception types
            raise FaceNetError('%s: onnxruntime cannot load it: %s' % (model, first_line(e)))
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise FaceNetError('%s: the model must have one input and one output, it has %d and %d'
                               % (model, len(inputs), len(outputs)))
        types = {'tensor(float)': 'float32'}
        self.image_size, self.embedding_size = _check_signature(
            model, inputs[0].shape, types.get(inputs[0].type, inputs[0].type), outputs[0].shape,
            types.get(outputs[0].type, outputs[0].type))
        self.input_name, self.output_name, self.model = inputs[0].name, outputs[0].name, model
        batch = inputs[0].shape[0]
        self.batch = batch if isinstance(batch, int) and batch > 0 else None

    def embed(self, batch):
        batch = np.ascontiguousarray(batch, np.float32)
        if not batch.shape[0]:
            return np.zeros((0, self.embedding_size), np.float32)
        try:
            if self.batch is None or self.batch == batch.shape[0]:
                return self.session.run([self.output_name], {self.input_name: batch})[0]
            step = self.batch
            return np.concatenate([self.session.run([self.output_name], {self.input_name: batch[k:k + step]})[0]
                                   for k in range(0, batch.shape[0], step)])
        except Exception as e:  # onnxruntime's own exception types
            raise FaceNetError('%s: %s' % (self.model, first_line(e)))


def _external_data(proto, path, model):
    """Whether the ONNX model keeps tensors in external files; each must be a plain relative name of a
    regular file inside the model's folder (no absolute path, no `..`, no link leading out)."""
    import onnx
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    found = False
    for tensor in _tensors(proto.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        found = True
        location = dict((e.key, e.value) for e in tensor.external_data).get('location', '')
        target = os.path.realpath(os.path.join(folder, location))
        if (not location or os.path.isabs(location) or '..' in location.replace('\\', '/').split('/')
                or os.path.commonpath([target, folder]) != folder or not os.path.isfile(target)):
            raise FaceNetError('%s: tensor %s keeps its data in %r, not a file inside the model\'s folder'
                               % (model, tensor.name, location))
    return found


def _tensors(graph):
    """Every TensorProto of an ONNX graph: initializers (dense and sparse) and node attributes, in
    subgraphs too."""
    for tensor in graph.initializer:
        yield tensor
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField('t'):
                yield attribute.t
            for tensor in attribute.tensors:
                yield tensor
            for sub in ([attribute.g] if attribute.HasField('g') else []) + list(attribute.graphs):
                for tensor in _tensors(sub):
                    yield tensor
