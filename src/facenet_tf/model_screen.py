"""Screening a model file's graph before it is imported: model files come from anywhere, so the ops
that the fetched tensors depend on (embeddings, and a checkpoint's restore op) must be inference ops
of INFERENCE_OPS (no file, network or Python-call op), a constant may not declare a tensor it does not
hold, a tensor made from a constant shape is bounded (MAX_CONST_BYTES), and a Saver may restore only
the checkpoint it is given. facenet_tf.model_io screens every GraphDef and meta graph with it."""
from facenet_tf.errors import FaceNetError
from facenet_tf.tf_setup import configure

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1

# Ops a model's embeddings (or its Saver's restore) may depend on: the ops of the project's networks,
# of the published model's graph and .meta, of MTCNN and of classic TF1 graphs (batch norm, dropout,
# v1 control flow), and plain tensor arithmetic. None reads or writes a file, talks to a network or
# calls Python; RestoreV2 is admitted only with the Saver's own file name (see screen_graph).
INFERENCE_OPS = frozenset("""
    Const Placeholder PlaceholderWithDefault Identity IdentityN StopGradient PreventGradient Snapshot NoOp
    VariableV2 Variable VarHandleOp ReadVariableOp Assign AssignSub AssignAdd AssignVariableOp
    AssignSubVariableOp AssignAddVariableOp RestoreV2
    Switch RefSwitch Merge RefMerge RefIdentity
    Conv2D DepthwiseConv2dNative Conv2DBackpropInput BiasAdd BiasAddV1 MatMul BatchMatMul BatchMatMulV2
    BatchMatMulV3 MaxPool MaxPoolV2 AvgPool FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3 LRN
    Relu Relu6 Elu Selu LeakyRelu Softplus Softsign Sigmoid Tanh Softmax LogSoftmax
    Add AddV2 AddN Sub Mul RealDiv Div DivNoNan FloorDiv FloorMod Maximum Minimum Neg Abs Sign Square Sqrt
    Rsqrt Reciprocal Exp Log Log1p Pow SquaredDifference Floor Ceil Round Erf Cast
    Sum Mean Prod Max Min ArgMax ArgMin L2Loss
    Equal NotEqual Less LessEqual Greater GreaterEqual LogicalAnd LogicalOr LogicalNot Select SelectV2
    Shape ShapeN Size Rank Reshape Squeeze ExpandDims Transpose ConcatV2 Concat Pack Unpack Slice
    StridedSlice Split SplitV Tile Pad PadV2 MirrorPad Fill ZerosLike OnesLike Range BroadcastTo
    BroadcastArgs ResizeBilinear ResizeNearestNeighbor
    RandomUniform RandomStandardNormal TruncatedNormal
""".split())
MAX_CONST_BYTES = 1 << 30   # a Const, or a tensor made from a constant shape, is refused above this size
_SHAPE_INPUT = {'Fill': 0, 'RandomUniform': 0, 'RandomStandardNormal': 0, 'TruncatedNormal': 0, 'BroadcastTo': 1}


def _node_name(ref):
    return ref.lstrip('^').split(':')[0]


def screen_graph(graph_def, path, fetches=('embeddings',), feeds=('input', 'phase_train'), saver_def=None):
    """Refuse (FaceNetError naming `path`) a graph whose fetched nodes depend on an op outside
    INFERENCE_OPS or on a Const declaring a huge tensor it does not hold; with `saver_def` (a meta
    graph's Saver) also screen its restore op, whose RestoreV2 may read only the checkpoint the
    Saver is given. Nodes in `feeds` are fed by the tools: what feeds them never runs."""
    by_name = {node.name: node for node in graph_def.node}
    roots = [(name, tuple(feeds)) for name in fetches]
    filename = None
    if saver_def is not None:
        filename = _node_name(saver_def.filename_tensor_name)
        roots.append((_node_name(saver_def.restore_op_name), (filename,)))
    for root, fed in roots:
        stack, screened, expanded = [(root, False)], set(), set()
        while stack:
            name, control = stack.pop()
            node = by_name.get(name)
            if node is None or name in expanded:
                continue
            if name not in screened:
                screened.add(name)
                _screen_node(node, path)
                if node.op in _SHAPE_INPUT and len(node.input) > _SHAPE_INPUT[node.op]:
                    _screen_shape(by_name.get(_node_name(node.input[_SHAPE_INPUT[node.op]])), node, path)
                if node.op == 'RestoreV2' and (filename is None or not node.input
                                               or _node_name(node.input[0]) != filename):
                    raise FaceNetError('%s: refused op RestoreV2 (node %s): it reads a file other than the model '
                                       'folder\'s checkpoint' % (path, node.name))
            if name in fed and not control:
                continue   # a fed tensor: its node runs only when something waits on it (a control input)
            expanded.add(name)
            stack.extend((_node_name(ref), ref.startswith('^')) for ref in node.input)


def _screen_node(node, path):
    if node.op not in INFERENCE_OPS:
        raise FaceNetError('%s: refused op %s (node %s): a model may hold only inference ops, not file, '
                           'network or Python-call ops' % (path, node.op, node.name))
    if node.op == 'Const':
        tensor = node.attr['value'].tensor
        try:
            itemsize = 1 if tensor.dtype == tf.string.as_datatype_enum else tf.dtypes.as_dtype(tensor.dtype).size
        except (TypeError, ValueError):
            raise FaceNetError('%s: node %s is not a valid constant' % (path, node.name))
        size = itemsize
        for dim in tensor.tensor_shape.dim:
            size *= max(dim.size, 0)
        if size > MAX_CONST_BYTES and size > 2 * tensor.ByteSize():
            raise FaceNetError('%s: node %s declares a %.1f GB constant the file does not hold'
                               % (path, node.name, size / 1e9))


def _screen_shape(shape_node, node, path):
    """Refuse an op that makes a tensor of a constant shape (Fill, random ops, BroadcastTo) larger
    than MAX_CONST_BYTES: memory is set by the model's real weights, not by a declared shape."""
    if shape_node is None or shape_node.op != 'Const':
        return
    try:
        dims = tf1.make_ndarray(shape_node.attr['value'].tensor).reshape(-1)
    except (TypeError, ValueError):
        raise FaceNetError('%s: node %s has an unreadable shape' % (path, node.name))
    size = 4
    for dim in dims.tolist():
        size *= max(int(dim), 0)
    if size > MAX_CONST_BYTES:
        raise FaceNetError('%s: node %s (%s) declares a %.1f GB tensor' % (path, node.name, node.op, size / 1e9))
