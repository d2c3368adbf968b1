"""MTCNN's three networks exported to ONNX and TensorFlow Lite, and the cache of exported files.

Each network is built by the same builders as the TensorFlow detector (detect_face._pnet/_rnet/_onet,
weights from mtcnn_weights), frozen, and converted: to ONNX with tf2onnx (opset 17; PNet's batch,
height and width are dynamic axes, RNet/ONet's batch), to TFLite with the TF1 converter (dynamic
shapes kept as -1; the runtime resizes the input per call). The graphs take what the TF networks take:
width-first float batches scaled by (x - 127.5) / 128; outputs in the same order
(PNet: reg, prob; RNet: reg, prob; ONet: reg, landmarks, prob).

PReLU is built as relu(x) - alpha * relu(-x) (the same values as max(x, alpha * x)), the form the TFLite
converter fuses into one PRELU op; in the ONNX graph the same pattern is folded into a PRelu node.

The tools use `exported_folder(fmt)`: the files of the packaged (or given) weights, exported on first
use into <cache>/mtcnn/<digest>/, where the digest is the sha256 of the weights and of EXPORT_VERSION,
so other weights or a changed exporter never reuse stale files.
"""
import hashlib
import logging
import os
import sys

import numpy as np

from facenet_tf import files
from facenet_tf.errors import FaceNetError
from facenet_tf.align.mtcnn_weights import NETS, load_weights

FORMATS = ('onnx', 'tflite')
EXPORT_VERSION = b'facenet-tf mtcnn export 2: opset 17, prelu folded, tflite prelu (1, 1, C)'
OUTPUTS = {'pnet': ('reg', 'prob'), 'rnet': ('reg', 'prob'), 'onet': ('reg', 'landmarks', 'prob')}
INPUT_SHAPES = {'pnet': (None, None, None, 3), 'rnet': (None, 24, 24, 3), 'onet': (None, 48, 48, 3)}
ONNX_OPSET = 17


def file_name(net, fmt):
    return '%s.%s' % (net, fmt)


def weights_digest(weights):
    """sha256 (hex) of every parameter of the three networks, in a fixed order, and EXPORT_VERSION."""
    h = hashlib.sha256(EXPORT_VERSION)
    for net in NETS:
        for layer in sorted(weights[net]):
            for param in sorted(weights[net][layer]):
                value = np.ascontiguousarray(weights[net][layer][param], dtype=np.float32)
                h.update(('%s/%s/%s%s' % (net, layer, param, value.shape)).encode())
                h.update(value.tobytes())
    return h.hexdigest()


def _export_prelu(x, layers, layer):
    from facenet_tf.align import detect_face as df
    with df.tf1.variable_scope(layer):
        alpha = df._param(layers, layer, 'alpha')
        if x.shape.ndims == 4:   # shaped (1, 1, C) as a Keras PReLU shared over height and width
            alpha = df.tf.reshape(alpha, (1, 1, -1))
        return df.tf.nn.relu(x) + (-alpha) * df.tf.nn.relu(-x)


def frozen_network(net, weights):
    """(GraphDef with weights as constants, input tensor name, output tensor names) of one network."""
    from facenet_tf.align import detect_face as df
    tf, tf1 = df.tf, df.tf1
    build = {'pnet': df._pnet, 'rnet': df._rnet, 'onet': df._onet}[net]
    graph = tf.Graph()
    with graph.as_default(), tf1.Session(graph=graph) as sess:
        x = tf1.placeholder(tf.float32, INPUT_SHAPES[net], 'input')
        outs = build(x, weights[net], prelu=_export_prelu)
        names = [tf.identity(out, name=name).op.name for out, name in zip(outs, OUTPUTS[net])]
        sess.run(tf1.global_variables_initializer())
        graph_def = tf1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), names)
    return graph_def, 'input:0', [n + ':0' for n in names]


def to_tflite(net, weights):
    """The network as a TFLite flatbuffer (bytes)."""
    from facenet_tf.align import detect_face as df
    tf, tf1 = df.tf, df.tf1
    graph_def, _, _ = frozen_network(net, weights)
    with tf.Graph().as_default() as graph:
        tf1.import_graph_def(graph_def, name='')
        converter = tf1.lite.TFLiteConverter(
            graph_def, [graph.get_tensor_by_name('input:0')],
            [graph.get_tensor_by_name(n + ':0') for n in OUTPUTS[net]])
        try:
            return converter.convert()
        except Exception as e:  # the converter raises several unrelated types
            raise FaceNetError('%s: TensorFlow Lite conversion failed: %s' % (net, str(e).strip().splitlines()[0]))


def _fold_prelu(model):
    """Replace Add(Relu(x), Mul(Relu(Neg(x)), c)) (either operand order) by PRelu(x, -c) in place;
    the nodes left without consumers are removed. Returns the number of PRelu nodes made."""
    import onnx
    from onnx import numpy_helper
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    inits = {init.name: init for init in graph.initializer}

    def made_by(name, op):
        node = producer.get(name)
        return node if node is not None and node.op_type == op else None

    folded, replaced = 0, {}
    for node in graph.node:
        if node.op_type != 'Add':
            continue
        for relu_in, mul_in in (node.input, node.input[::-1]):
            relu, mul = made_by(relu_in, 'Relu'), made_by(mul_in, 'Mul')
            if relu is None or mul is None:
                continue
            pairs = [(a, b) for a, b in (mul.input, mul.input[::-1]) if b in inits and made_by(a, 'Relu')]
            if not pairs:
                continue
            neg = made_by(made_by(pairs[0][0], 'Relu').input[0], 'Neg')
            if neg is None or neg.input[0] != relu.input[0]:
                continue
            slope = -numpy_helper.to_array(inits[pairs[0][1]])
            name = node.output[0] + '_slope'
            graph.initializer.append(numpy_helper.from_array(slope.astype(np.float32), name))
            replaced[id(node)] = onnx.helper.make_node('PRelu', [relu.input[0], name], [node.output[0]],
                                                       name=node.name + '_prelu')
            folded += 1
            break
    nodes = [replaced.get(id(n), n) for n in graph.node]
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(nodes):   # nodes are topologically sorted: drop those nothing reads
        if any(out in needed for out in node.output):
            keep.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    used = {name for node in keep for name in node.input}
    kept_inits = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    return folded


def to_onnx(net, weights):
    """The network as a serialised ONNX model (bytes), checked by onnx.checker."""
    try:
        import onnx
        import tf2onnx
    except ImportError as e:
        raise FaceNetError('exporting MTCNN to ONNX needs the %s package: pip install tf2onnx onnx'
                           % (e.name or 'tf2onnx'))
    graph_def, input_name, output_names = frozen_network(net, weights)
    logger = logging.getLogger('tf2onnx')
    level = logger.level
    logger.setLevel(logging.CRITICAL)   # tf2onnx logs every rewriter it tries
    try:
        model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=[input_name],
                                                  output_names=output_names, opset=ONNX_OPSET)
    except Exception as e:  # the converter raises several unrelated types
        raise FaceNetError('%s: ONNX conversion failed: %s' % (net, str(e).strip().splitlines()[0]))
    finally:
        logger.setLevel(level)
    _fold_prelu(model)
    model.producer_name = 'facenet-tf'
    onnx.checker.check_model(model)
    return model.SerializeToString()


def export(out_dir, weights=None, formats=FORMATS, progress=None):
    """Write <net>.<fmt> for the three networks and every format into `out_dir` (each file atomically);
    `weights` None means the packaged ones. Returns [(path, bytes)]. `progress(path)` is called after
    each file."""
    weights = weights if weights is not None else load_weights(None)
    convert = {'onnx': to_onnx, 'tflite': to_tflite}
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for fmt in formats:
        for net in NETS:
            data = convert[fmt](net, weights)
            path = os.path.join(out_dir, file_name(net, fmt))
            files.write_atomic(path, data)
            written.append((path, len(data)))
            if progress:
                progress(path)
    return written


def cache_root():
    """<cache>/mtcnn, the cache of pretrained models ($FACENET_TF_HOME, else ~/.cache/facenet-tf1compat)."""
    from facenet_tf.pretrained import cache_dir
    return os.path.join(cache_dir(), 'mtcnn')


def cache_folder(weights):
    """<cache>/mtcnn/<digest>: where the exports of these weights live."""
    return os.path.join(cache_root(), weights_digest(weights)[:32])


def exported_folder(fmt, model_path=None, weights=None):
    """Folder holding pnet/rnet/onet.<fmt> for the weights of `model_path` (None: packaged), exported
    into the cache on first use. Concurrent first uses each write whole files and rename them."""
    if fmt not in FORMATS:
        raise FaceNetError('unknown export format %r (one of %s)' % (fmt, ', '.join(FORMATS)))
    weights = weights if weights is not None else load_weights(model_path)
    folder = cache_folder(weights)
    if not all(os.path.isfile(os.path.join(folder, file_name(net, fmt))) for net in NETS):
        print('exporting the MTCNN networks to %s (once, a few seconds)' % os.path.join(folder, '*.' + fmt),
              file=sys.stderr, flush=True)
        export(folder, weights, (fmt,))
    return folder
