"""MTCNN run by onnxruntime or the TFLite interpreter, through the TensorFlow detector's cascade.

`make_detector(kind)` returns the detector of `--detector tf|onnx|tflite`: the TensorFlow MTCNN
(detect_face.MTCNN) or an `ExportedMTCNN`, which has the same methods (pyramid, detect, detect_batch,
close) and drives the same cascade code (detect_face._cascade) with networks loaded from the exported
files (mtcnn_export; found in, or exported into, the cache on first use).

Exported files are untrusted on read: a regular file of at most MAX_FILE_BYTES with its format's
signature; an ONNX model is parsed with onnx (no external data, only the operators an MTCNN export
uses, the default domain only, no functions) and handed to onnxruntime as bytes, so nothing beside
it is ever read; a TFLite model may use only the built-in operators the export uses (checked before
anything runs). The inputs and outputs must have the network's shapes.
"""
import os
import threading
import warnings
from collections import OrderedDict

import numpy as np

from facenet_tf.errors import FaceNetError
from facenet_tf.files import require_regular_file
from facenet_tf.align import detect_face as df  # TensorFlow: this module is imported only when used
from facenet_tf.align.aligner import DETECTORS
from facenet_tf.align.mtcnn_export import INPUT_SHAPES, OUTPUTS, exported_folder, file_name
from facenet_tf.align.mtcnn_weights import NETS

MAX_FILE_BYTES = 16 << 20    # the exported files are 30 KB - 1.6 MB
# the operators of the exported files (a TFLite interpreter lists XNNPACK's share as DELEGATE)
ONNX_OPS = {'Transpose', 'Conv', 'PRelu', 'MaxPool', 'Softmax', 'Reshape', 'MatMul', 'Add'}
TFLITE_OPS = {'ADD', 'CONV_2D', 'FULLY_CONNECTED', 'MAX_POOL_2D', 'MUL', 'NEG', 'PRELU', 'RELU', 'RESHAPE',
              'SOFTMAX', 'DELEGATE'}
OUTPUT_CHANNELS = {'pnet': (4, 2), 'rnet': (4, 2), 'onet': (4, 10, 2)}
PIECES = {'rnet': 64, 'onet': 16}   # largest crop count of one TFLite call (their shapes recur)


def read_model_file(path, fmt):
    """The bytes of an exported file, after the size and signature checks."""
    require_regular_file(path, 'an exported MTCNN network')
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise FaceNetError('%s: %d bytes, more than an exported MTCNN network (at most %d)'
                           % (path, size, MAX_FILE_BYTES))
    with open(path, 'rb') as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if fmt == 'tflite' and data[4:8] != b'TFL3':
        raise FaceNetError('%s: not a TensorFlow Lite file (no TFL3 signature)' % path)
    if fmt == 'onnx' and data[:1] != b'\x08':   # ModelProto field 1 (ir_version) comes first
        raise FaceNetError('%s: not an ONNX model (it does not start with an ir_version field)' % path)
    return data


def _shape_problem(net, shape, what):
    """Why `shape` (ints, None/-1/str for dynamic) does not fit the network's input, or None."""
    want = INPUT_SHAPES[net]
    dims = [None if (d is None or isinstance(d, str) or d < 0) else int(d) for d in shape]
    if len(dims) != 4 or any(w is not None and d != w for d, w in zip(dims, want)):
        shown = ['?' if d is None else d for d in dims]
        return '%s [%s], the %s network takes [%s]' % (what, ', '.join(map(str, shown)), net,
                                                      ', '.join('?' if d is None else str(d) for d in want))
    return None


def _checked_onnx(data, net, path):
    import onnx
    try:
        model = onnx.load_from_string(data)
    except Exception as e:   # protobuf's DecodeError and friends
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FaceNetError('%s: not a readable ONNX model (%s)' % (path, reason))
    graph = model.graph
    if len(model.functions):   # (opset imports may name other domains: the nodes are checked below)
        raise FaceNetError('%s: defines functions, which an MTCNN export does not have' % path)
    for init in graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL or len(init.external_data):
            raise FaceNetError('%s: refers to external data (%s); exported networks hold their weights'
                               % (path, init.name))
    for node in graph.node:
        if node.domain not in ('', 'ai.onnx') or node.op_type not in ONNX_OPS:
            raise FaceNetError('%s: operator %s is not one an MTCNN export uses' % (path, node.op_type))
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise FaceNetError('%s: operator %s holds a subgraph' % (path, node.op_type))
    inputs = [i for i in graph.input if i.name not in {init.name for init in graph.initializer}]
    if len(inputs) != 1 or len(graph.output) != len(OUTPUTS[net]):
        raise FaceNetError('%s: %d inputs and %d outputs, the %s network has 1 and %d'
                           % (path, len(inputs), len(graph.output), net, len(OUTPUTS[net])))
    dims = [d.dim_param if d.HasField('dim_param') or not d.HasField('dim_value') else d.dim_value
            for d in inputs[0].type.tensor_type.shape.dim]
    problem = _shape_problem(net, dims, 'input shape')
    if problem:
        raise FaceNetError('%s: %s' % (path, problem))
    return model


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise FaceNetError('--detector onnx needs the onnxruntime package: pip install onnxruntime')
    return onnxruntime


class _OnnxNet(object):
    """One network in an onnxruntime session: net(x) -> tuple of outputs."""

    def __init__(self, path, net, threads):
        ort = _import_onnxruntime()
        data = read_model_file(path, 'onnx')
        _checked_onnx(data, net, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # idle threads sleep instead of spinning: spinning doubled the time on a loaded 2-core machine
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        try:
            self.session = ort.InferenceSession(data, options, providers=['CPUExecutionProvider'])
        except Exception as e:   # onnxruntime's Fail / InvalidGraph / ... errors
            raise FaceNetError('%s: onnxruntime refused the model: %s' % (path, str(e).strip().splitlines()[0]))
        self.input = self.session.get_inputs()[0].name
        self.path, self.net = path, net

    def __call__(self, x):
        return tuple(self.session.run(None, {self.input: x}))


class _TFLiteNet(object):
    """One network run by TFLite interpreters, one per input shape: resizing an interpreter's input
    re-plans its memory and XNNPACK's operators (milliseconds), so an interpreter is kept for every
    shape that recurs (PNet levels of one image size; RNet/ONet crops are run in pieces of
    power-of-two counts, PIECES, so their shapes recur too). Interpreters hold at most
    `budget_pixels` input pixels together; beyond that the least recently used one is resized.
    Calls are serialised by a lock (an interpreter is not thread-safe; the aligner detects two
    batches at once)."""

    def __init__(self, path, net, threads, budget_pixels):
        from facenet_tf import tf_setup
        self.tf = tf_setup.configure()
        self.data = read_model_file(path, 'tflite')
        self.path, self.threads, self.budget = path, threads, budget_pixels
        self.piece = PIECES.get(net)
        interpreter = self._new()
        try:
            ops = {d['op_name'] for d in interpreter._get_ops_details()}
        except (ValueError, RuntimeError) as e:
            raise FaceNetError('%s: not a readable TensorFlow Lite model (%s)' % (path, str(e).strip().splitlines()[0]))
        unknown = sorted(ops - TFLITE_OPS)
        if unknown:
            raise FaceNetError('%s: operator %s is not one an MTCNN export uses' % (path, unknown[0]))
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != len(OUTPUTS[net]):
            raise FaceNetError('%s: %d inputs and %d outputs, the %s network has 1 and %d'
                               % (path, len(inputs), len(outputs), net, len(OUTPUTS[net])))
        problem = _shape_problem(net, list(inputs[0]['shape_signature']), 'input shape')
        if problem or inputs[0]['dtype'] != np.float32:
            raise FaceNetError('%s: %s' % (path, problem or 'input type %s, not float32' % inputs[0]['dtype']))
        by_name = {d['name']: d['index'] for d in outputs}
        if set(by_name) != set(OUTPUTS[net]):
            raise FaceNetError('%s: outputs %s, the %s network has %s'
                               % (path, sorted(by_name), net, list(OUTPUTS[net])))
        self.input = inputs[0]['index']
        self.outputs = [by_name[name] for name in OUTPUTS[net]]
        self.lock = threading.Lock()
        self.spare = interpreter             # not yet given a shape
        self.by_shape = OrderedDict()        # shape -> [interpreter, pixels it was sized for], oldest first

    def _new(self):
        try:
            with warnings.catch_warnings():   # tf.lite.Interpreter warns that it is deprecated
                warnings.simplefilter('ignore')
                return self.tf.lite.Interpreter(model_content=self.data, num_threads=self.threads)
        except (ValueError, RuntimeError) as e:
            raise FaceNetError('%s: not a readable TensorFlow Lite model (%s)'
                               % (self.path, str(e).strip().splitlines()[0]))

    def _interpreter(self, shape):
        """The interpreter sized for `shape`: kept, made, or (over the budget) the least recently
        used one resized after dropping as many others as it takes to fit."""
        entry = self.by_shape.pop(shape, None)
        if entry is None:
            pixels = shape[0] * shape[1] * shape[2]
            held = sum(p for _, p in self.by_shape.values())
            if self.spare is not None:
                entry, self.spare = [self.spare, pixels], None
            elif self.by_shape and held + pixels > self.budget:
                while True:
                    entry = self.by_shape.popitem(last=False)[1]
                    held -= entry[1]
                    if not self.by_shape or held + max(entry[1], pixels) <= self.budget:
                        break
                entry[1] = max(entry[1], pixels)   # an arena keeps the largest size it had
            else:
                entry = [self._new(), pixels]
            entry[0].resize_tensor_input(self.input, shape)
            entry[0].allocate_tensors()
        self.by_shape[shape] = entry
        return entry[0]

    def _run(self, x):
        with self.lock:
            interpreter = self._interpreter(x.shape)
            interpreter.set_tensor(self.input, np.ascontiguousarray(x, dtype=np.float32))
            interpreter.invoke()
            return tuple(interpreter.get_tensor(i) for i in self.outputs)

    def __call__(self, x):
        counts = [x.shape[0]] if self.piece is None else _pieces(x.shape[0], self.piece)
        if len(counts) <= 1:
            return self._run(x)
        parts, start = [], 0
        for count in counts:
            parts.append(self._run(x[start:start + count]))
            start += count
        return tuple(np.concatenate(p, axis=0) for p in zip(*parts))


def _pieces(n, largest):
    """n as a sum of powers of two, at most `largest` (a power of two) each, largest first."""
    out = [largest] * (n // largest)
    n %= largest
    bit = largest
    while n:
        if n & bit:
            out.append(bit)
            n -= bit
        bit >>= 1
    return out


def _checked_outputs(net, path, x, outs):
    """The outputs of a first call, checked against the network's (a file with the right input but
    other outputs would otherwise fail deep in the cascade)."""
    channels, ndim = OUTPUT_CHANNELS[net], 4 if net == 'pnet' else 2
    if len(outs) != len(channels) or any(o.ndim != ndim or o.shape[0] != x.shape[0] or o.shape[-1] != c
                                         for o, c in zip(outs, channels)):
        raise FaceNetError('%s: outputs of shapes %s, the %s network gives %d-D outputs of %s channels'
                           % (path, [list(o.shape) for o in outs], net, ndim, list(channels)))
    return outs


class ExportedNetworks(object):
    """PNet/RNet/ONet of one folder of exported files, as the cascade calls them."""

    def __init__(self, kind, folder, threads=None):
        self.kind, self.folder = kind, folder
        threads = threads or df.cpu_count()
        self.nets = {}
        for net in NETS:
            path = os.path.join(folder, file_name(net, kind))
            if kind == 'tflite':
                run = _TFLiteNet(path, net, threads, df.PNET_CALL_PIXELS)
            else:
                run = _OnnxNet(path, net, threads)
            probe = np.zeros((1, 12, 12, 3) if net == 'pnet' else (1,) + INPUT_SHAPES[net][1:], np.float32)
            _checked_outputs(net, path, probe, run(probe))
            self.nets[net] = run

    def pnet(self, batches):
        return [self.nets['pnet'](b) for b in batches]

    def rnet(self, x):
        return self.nets['rnet'](x)

    def onet(self, x):
        return self.nets['onet'](x)


class ExportedMTCNN(df.MTCNN):
    """The MTCNN detector on exported networks (`kind` 'onnx' or 'tflite'): detect_face.MTCNN's
    methods and cascade, its stages run by onnxruntime or TFLite. `folder` holds pnet/rnet/onet.<kind>;
    None means the export of `model_path`'s weights (None: packaged) in the cache, made on first use."""

    def __init__(self, kind, folder=None, model_path=None, minsize=None, threshold=None, factor=None,
                 threads=None):
        if kind not in ('onnx', 'tflite'):
            raise FaceNetError('unknown exported detector %r (onnx or tflite)' % (kind,))
        if kind == 'onnx':
            _import_onnxruntime()   # the one-line error before any export work
        self.kind = kind
        self.minsize = df.DEFAULT_MINSIZE if minsize is None else minsize
        self.threshold = tuple(df.DEFAULT_THRESHOLD if threshold is None else threshold)
        self.factor = df.DEFAULT_FACTOR if factor is None else factor
        folder = os.path.expanduser(folder) if folder else exported_folder(kind, model_path)
        self.networks = ExportedNetworks(kind, folder, threads)

    def stages(self):
        return self.networks.pnet, self.networks.rnet, self.networks.onet

    def close(self):
        self.networks = None


def make_detector(kind='tf', model_path=None, threads=None, gpu_memory_fraction=None, allow_growth=False, **kw):
    """The detector of `--detector kind` ('tf', 'onnx', 'tflite'); `kw` are minsize, threshold, factor."""
    if kind not in DETECTORS:
        raise FaceNetError('unknown detector %r (one of %s)' % (kind, ', '.join(DETECTORS)))
    if kind == 'tf':
        return df.MTCNN(model_path=model_path, threads=threads, gpu_memory_fraction=gpu_memory_fraction,
                     allow_growth=allow_growth, **{k: v for k, v in kw.items() if v is not None})
    return ExportedMTCNN(kind, model_path=model_path, threads=threads, **kw)


def prepare_detector(kind, model_path=None):
    """Check that the runtime of `kind` is installed, export the networks into the cache if they
    are not there yet and load them once (a bad file is refused before a tool writes anything); the
    folder of the exported files (None for 'tf')."""
    if kind == 'tf':
        return None
    if kind == 'onnx':
        _import_onnxruntime()
    folder = exported_folder(kind, model_path)
    ExportedNetworks(kind, folder, threads=1)
    return folder
