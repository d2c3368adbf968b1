"""Model files: loading a frozen `.pb` or a checkpoint folder, saving in the classic layout, freezing.

The classic folder layout is `model-<subdir>.meta` (written once) plus `model-<subdir>.ckpt-<step>`
checkpoints; a frozen model is a single GraphDef `.pb`. Tensor contract of every loaded model:
`input:0` (float [N,H,W,3]), `phase_train:0` (bool), `embeddings:0` (L2-normalised).
`load_for_inference` is how every tool loads a model to embed images; `load_model` is the classic
facenet.load_model.

Model files come from anywhere, so every GraphDef and meta graph is screened (`screen_graph`) before it
is imported: the ops that the fetched tensors depend on (embeddings, and a checkpoint's restore op)
must be inference ops of INFERENCE_OPS (no file, network or Python-call op), the Saver may restore
only the checkpoint this module names, and a checkpoint folder's files must lie inside it.
"""
import os
import re
import stat
import time

from facenet_tf.errors import FaceNetError
from facenet_tf.files import atomic_open, write_atomic
from facenet_tf.tf_setup import configure

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1

REQUIRED_TENSORS = ('input:0', 'embeddings:0')
_CKPT_RE = re.compile(r'^(model-[\w\- ]+\.ckpt-(\d+))')


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


def model_not_found(model):
    """The error for a model path that is neither a file nor a folder."""
    return FaceNetError('model not found: %s (give a frozen .pb file or a checkpoint folder)' % model)


def find_model(model):
    """`model` with ~ expanded; FaceNetError when it is neither a file (.pb) nor a folder."""
    path = os.path.expanduser(model)
    if not (os.path.isfile(path) or os.path.isdir(path)):
        raise model_not_found(model)
    return path


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
                            % (ckpt_file, model, (str(e).strip().splitlines() or [type(e).__name__])[0]))
    else:
        raise model_not_found(model)
    check_tensors(tf1.get_default_graph(), model)


def import_frozen_graph(graph_def, model, input_map=None, use_moving_averages=False):
    """Import the parsed frozen graph of file `model` into the default graph. It holds one set of
    weights: asking it for moving averages is an error."""
    if use_moving_averages:
        raise FaceNetError('%s is a frozen graph: it holds one set of weights (freeze the checkpoint folder '
                        'with --use_moving_averages instead)' % model)
    screen_graph(graph_def, model)
    for node in graph_def.node:
        node.device = ''   # a file's device names (another machine's GPUs or jobs) are not placements here
    try:
        tf1.import_graph_def(graph_def, input_map=input_map, name='')
    except (ValueError, TypeError, KeyError, tf.errors.OpError) as e:
        raise FaceNetError('cannot import %s: %s' % (model, (str(e).strip().splitlines() or [type(e).__name__])[0]))


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


FROZEN_OUTPUTS = ('embeddings', 'label_batch')
_DEAD = object()


def _split_ref(ref):
    """'^name' / 'name' / 'name:k' -> (name, port, is_control)."""
    if ref.startswith('^'):
        return ref[1:], -1, True
    name, _, port = ref.partition(':')
    return name, int(port) if port else 0, False


def _join_ref(name, port):
    return name if port == 0 else '%s:%d' % (name, port)


def _topological(graph_def):
    by_name = {n.name: n for n in graph_def.node}
    seen, order = set(), []
    for root in graph_def.node:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if node.name in seen:
                continue
            seen.add(node.name)
            stack.append((node, True))
            for ref in node.input:
                dep = by_name.get(_split_ref(ref)[0])
                if dep is not None and dep.name not in seen:
                    stack.append((dep, False))
    return order


def fold_constant_switches(graph_def):
    """Resolve v1 control flow (Switch/Merge) whose predicate is a constant: keep the live branch,
    drop the dead one, turn each Merge into an Identity. Used to remove the batch-norm training
    branch from a frozen graph once phase_train is fixed to False."""
    consts = {n.name: n.attr['value'].tensor.bool_val[0] for n in graph_def.node
              if n.op == 'Const' and n.attr['dtype'].type == tf.bool.as_datatype_enum
              and len(n.attr['value'].tensor.bool_val) == 1}
    alias = {}      # (name, port) -> (name, port) of the tensor that replaces it, or _DEAD
    out = tf1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)

    def resolve(name, port):
        seen = set()
        while (name, port) in alias and (name, port) not in seen:
            seen.add((name, port))
            target = alias[(name, port)]
            if target is _DEAD:
                return _DEAD
            name, port = target
        return name, port

    for node in _topological(graph_def):
        inputs, dead = [], False
        for ref in node.input:
            name, port, control = _split_ref(ref)
            target = resolve(name, 0 if control else port)
            if target is _DEAD:
                if node.op == 'Merge' and not control:
                    continue
                dead = True
                break
            inputs.append('^' + target[0] if control else _join_ref(*target))
        if dead or (node.op == 'Merge' and not any(not r.startswith('^') for r in inputs)):
            for port in range(2):
                alias[(node.name, port)] = _DEAD
            continue
        if node.op in ('Switch', 'RefSwitch') and _split_ref(inputs[1])[0] in consts:
            pred = consts[_split_ref(inputs[1])[0]]
            data = _split_ref(inputs[0])
            alias[(node.name, 1 if pred else 0)] = (data[0], data[1])
            alias[(node.name, 0 if pred else 1)] = _DEAD
            continue
        if node.op == 'Identity' and inputs and _split_ref(inputs[0])[0] in consts:
            consts[node.name] = consts[_split_ref(inputs[0])[0]]
        new = out.node.add()
        new.CopyFrom(node)
        del new.input[:]
        if node.op == 'Merge':
            data_inputs = [r for r in inputs if not r.startswith('^')]
            new.op = 'Identity'
            del new.attr['N']
            new.input.extend(data_inputs[:1] + [r for r in inputs if r.startswith('^')])
        else:
            new.input.extend(inputs)
    return out


def _placeholder(name, dtype, shape):
    node = tf1.NodeDef(name=name, op='Placeholder')
    node.attr['dtype'].type = dtype.as_datatype_enum
    node.attr['shape'].shape.CopyFrom(tf.TensorShape(shape).as_proto())
    return node


def freeze_session(sess, output_names=FROZEN_OUTPUTS):
    """Frozen inference GraphDef of the model loaded in `sess`: variables become constants,
    `input` and `label_batch` become placeholders (no input queues), `phase_train` is fixed to
    False so the batch-norm training branch is removed, and only what the outputs need is kept."""
    graph = sess.graph
    graph_def = graph.as_graph_def()
    replaced = {}
    for name in ('input', 'label_batch'):
        try:
            op = graph.get_operation_by_name(name)
        except KeyError:
            continue
        if op.type != 'Placeholder':
            t = op.outputs[0]
            shape = t.shape.as_list() if t.shape.rank is not None else None
            if shape:
                shape[0] = None
            replaced[name] = _placeholder(name, t.dtype.base_dtype, shape)
    try:
        phase = graph.get_operation_by_name('phase_train')
    except KeyError:
        phase = None
    const_name = 'phase_train_frozen_false'
    nodes = []
    for node in graph_def.node:
        if node.name in replaced:
            nodes.append(replaced[node.name])
            continue
        if phase is not None:
            refs = [_split_ref(r) for r in node.input]
            if any(n == 'phase_train' for n, _, _ in refs):
                node = tf1.NodeDef().__class__.FromString(node.SerializeToString())
                del node.input[:]
                node.input.extend(('^' + const_name if c else const_name) if n == 'phase_train'
                                  else (('^' + n) if c else _join_ref(n, p)) for n, p, c in refs)
        nodes.append(node)
    if phase is not None:
        const = tf1.NodeDef(name=const_name, op='Const')
        const.attr['dtype'].type = tf.bool.as_datatype_enum
        const.attr['value'].tensor.CopyFrom(tf1.make_tensor_proto(False, tf.bool))
        nodes.append(const)
        if phase.type != 'Placeholder':
            nodes = [n for n in nodes if n.name != 'phase_train'] + [_placeholder('phase_train', tf.bool, [])]
    rewired = tf1.GraphDef()
    rewired.versions.CopyFrom(graph_def.versions)
    rewired.library.CopyFrom(graph_def.library)
    rewired.node.extend(nodes)
    outputs = [n for n in output_names if any(node.name == n for node in rewired.node)]
    if 'embeddings' not in outputs:
        raise FaceNetError('the model has no "embeddings" node to freeze')
    frozen = tf1.graph_util.convert_variables_to_constants(sess, rewired, outputs)
    frozen = tf1.graph_util.extract_sub_graph(fold_constant_switches(frozen), outputs)
    if phase is not None:
        frozen.node.extend([_placeholder('phase_train', tf.bool, [])])
    return frozen


def freeze_model(model_dir, output_file, use_moving_averages=False):
    """Freeze a checkpoint folder (its variables, or their moving averages) into `output_file`;
    returns the number of nodes written."""
    with tf1.Graph().as_default() as graph:
        with tf1.Session(graph=graph) as sess:
            load_model(model_dir, session=sess, use_moving_averages=use_moving_averages)
            frozen = freeze_session(sess)
    write_graph_def(frozen, output_file)
    return len(frozen.node)


def write_graph_def(graph_def, output_file):
    """Write a GraphDef as a binary .pb, under a temporary name renamed into place."""
    out_dir = os.path.dirname(os.path.abspath(output_file))
    os.makedirs(out_dir, exist_ok=True)
    with atomic_open(output_file, 'wb') as f:
        f.write(graph_def.SerializeToString())


def _embedding_graph(graph_def, model, image_size):
    """The part of a screened frozen graph that computes `embeddings` from an `input` placeholder of
    [1, image_size, image_size, 3] (an `input` fed by anything else becomes that placeholder)."""
    names = {node.name for node in graph_def.node}
    if not {'input', 'embeddings'} <= names:
        raise FaceNetError('model %s has no tensor %s' % (model, ', '.join(sorted({'input', 'embeddings'} - names))))
    rewired = tf1.GraphDef()
    rewired.versions.CopyFrom(graph_def.versions)
    for node in graph_def.node:
        if node.name == 'input':
            node = _placeholder('input', tf.float32, [1, image_size, image_size, 3])
        rewired.node.extend([node])
    return tf1.graph_util.extract_sub_graph(rewired, ['embeddings'])


def export_tflite(model, output_file, image_size=160):
    """Convert a frozen `.pb` or a checkpoint folder (frozen first, in memory) to a TensorFlow Lite
    flatbuffer with input `input` [1, image_size, image_size, 3] and output `embeddings`, written
    atomically. Returns its size."""
    model_exp = os.path.expanduser(model)
    if os.path.isdir(model_exp):
        with tf1.Graph().as_default() as graph:
            with tf1.Session(graph=graph) as sess:
                load_model(model_exp, session=sess)
                graph_def = freeze_session(sess)
    elif os.path.isfile(model_exp):
        graph_def = read_graph_def(model_exp)
        screen_graph(graph_def, model)
    else:
        raise model_not_found(model)
    graph_def = _embedding_graph(graph_def, model, image_size)
    with tf1.Graph().as_default() as graph:
        import_frozen_graph(graph_def, model)
        try:
            converter = tf1.lite.TFLiteConverter(graph_def, [graph.get_tensor_by_name('input:0')],
                                                 [graph.get_tensor_by_name('embeddings:0')])
            flatbuffer = converter.convert()
        except Exception as e:  # the converter raises several unrelated types
            raise FaceNetError('TensorFlow Lite conversion failed: %s' % str(e).strip().splitlines()[0])
    write_atomic(output_file, flatbuffer)
    return len(flatbuffer)
