"""Freezing the model loaded in a session into an inference GraphDef: variables become constants,
the input queues become placeholders, `phase_train` is fixed to False and the batch-norm training
branches it selected are folded away (fold_constant_switches); write_graph_def writes the .pb.
facenet_tf.model_io builds freeze_model and export_tflite on it; keras_import and the tests freeze
the graphs they build with it. fold_batch_norms folds inference batch norms into the convolutions
before them (runtimes runs bf16 models on that graph)."""
import os

import numpy as np

from facenet_tf.errors import FaceNetError
from facenet_tf.files import atomic_open
from facenet_tf.tf_setup import configure

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1


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
    rewired, outputs, phase = _rewired(sess.graph, output_names)
    return _finished(tf1.graph_util.convert_variables_to_constants(sess, rewired, outputs), outputs, phase)


def freeze_with_values(graph, read, output_names=FROZEN_OUTPUTS):
    """freeze_session for a graph without a session: each VariableV2 the outputs need becomes the
    constant `read(name)` (a NumPy array of the variable's dtype and shape, else a FaceNetError).
    None when the graph holds variables of another kind (resource variables): freeze a session."""
    rewired, outputs, phase = _rewired(graph, output_names)
    needed = tf1.graph_util.extract_sub_graph(rewired, outputs)
    if any(node.op in ('VarHandleOp', 'Variable') for node in needed.node):
        return None
    frozen = tf1.GraphDef()
    frozen.versions.CopyFrom(needed.versions)
    frozen.library.CopyFrom(needed.library)
    for node in needed.node:
        if node.op == 'VariableV2':
            value = np.asarray(read(node.name))
            dtype = tf.as_dtype(node.attr['dtype'].type)
            shape = tuple(tf.TensorShape(node.attr['shape'].shape).as_list())
            if value.dtype != dtype.as_numpy_dtype or value.shape != shape:
                raise FaceNetError('variable %s: the checkpoint holds %s %s, the graph wants %s %s'
                                   % (node.name, value.dtype, list(value.shape), dtype.name, list(shape)))
            const = tf1.NodeDef(name=node.name, op='Const')
            const.attr['dtype'].type = dtype.as_datatype_enum
            const.attr['value'].tensor.CopyFrom(tf1.make_tensor_proto(value))
            node = const
        frozen.node.extend([node])
    return _finished(frozen, outputs, phase)


def _rewired(graph, output_names):
    """(GraphDef of `graph` with `input`/`label_batch` as placeholders and `phase_train` read as a
    constant False, the output names it has, the phase_train op or None)."""
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
    return rewired, outputs, phase


def _finished(frozen, outputs, phase):
    """The frozen GraphDef with its constant switches folded, cut to the outputs (and phase_train)."""
    frozen = tf1.graph_util.extract_sub_graph(fold_constant_switches(frozen), outputs)
    if phase is not None:
        frozen.node.extend([_placeholder('phase_train', tf.bool, [])])
    return frozen


BATCH_NORM_OPS = ('FusedBatchNorm', 'FusedBatchNormV2', 'FusedBatchNormV3')


def _constant(by_name, ref):
    """The float32 value of the Const behind `ref` (through Identity nodes), or None."""
    name = _split_ref(ref)[0]
    for _ in range(len(by_name)):
        node = by_name.get(name)
        if node is None:
            return None
        if node.op == 'Const':
            if node.attr['dtype'].type != tf.float32.as_datatype_enum:
                return None
            return tf1.make_ndarray(node.attr['value'].tensor)
        if node.op != 'Identity' or not node.input or node.input[0].startswith('^'):
            return None
        name = _split_ref(node.input[0])[0]
    return None


def fold_batch_norms(graph_def):
    """(GraphDef, count): each inference batch norm (is_training False, NHWC, constant statistics)
    whose input is a Conv2D used by nothing else, with constant weights, becomes that Conv2D with its
    weights scaled per output channel and a BiasAdd of the shifted offset, under the batch norm's
    name. Exact in real arithmetic; float32 rounding moves embeddings by about 1e-6. Why: oneDNN's
    bf16 rewrite fuses Conv2D + BiasAdd + Relu, but leaves a batch norm as a separate op."""
    by_name = {n.name: n for n in graph_def.node}
    users = {}
    for node in graph_def.node:
        for ref in node.input:
            name, port, _ = _split_ref(ref)
            users.setdefault(name, []).append((node.name, port))
    replace, folded = {}, 0
    for bn in graph_def.node:
        if (bn.op not in BATCH_NORM_OPS or bn.attr['is_training'].b
                or bn.attr['data_format'].s not in (b'', b'NHWC') or len(bn.input) != 5
                or any(port != 0 for _, port in users.get(bn.name, ()))):
            continue
        conv = by_name.get(_split_ref(bn.input[0])[0])
        if (conv is None or conv.op != 'Conv2D' or _split_ref(bn.input[0])[1] != 0
                or conv.attr['data_format'].s not in (b'', b'NHWC') or len(users.get(conv.name, ())) != 1):
            continue
        values = [_constant(by_name, ref) for ref in [conv.input[1]] + list(bn.input[1:])]
        if any(v is None for v in values):
            continue
        weights, scale, offset, mean, variance = [v.astype(np.float64) for v in values]
        if weights.ndim != 4 or any(v.shape != weights.shape[-1:] for v in (scale, offset, mean, variance)):
            continue
        factor = scale / np.sqrt(variance + bn.attr['epsilon'].f)
        new_weights = tf1.NodeDef(name=conv.name + '/folded_weights', op='Const')
        new_weights.attr['dtype'].type = tf.float32.as_datatype_enum
        new_weights.attr['value'].tensor.CopyFrom(tf1.make_tensor_proto((weights * factor).astype(np.float32)))
        bias = tf1.NodeDef(name=bn.name + '/folded_bias', op='Const')
        bias.attr['dtype'].type = tf.float32.as_datatype_enum
        bias.attr['value'].tensor.CopyFrom(tf1.make_tensor_proto((offset - mean * factor).astype(np.float32)))
        new_conv = tf1.NodeDef()
        new_conv.CopyFrom(conv)
        new_conv.input[1] = new_weights.name
        add = tf1.NodeDef(name=bn.name, op='BiasAdd', input=[bn.input[0], bias.name] +
                          [ref for ref in bn.input if ref.startswith('^')])
        add.attr['T'].type = tf.float32.as_datatype_enum
        add.attr['data_format'].s = b'NHWC'
        add.device = bn.device
        replace[conv.name] = [new_conv, new_weights]
        replace[bn.name] = [add, bias]
        folded += 1
    out = tf1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        out.node.extend(replace.get(node.name, [node]))
    return out, folded


def folded_embedding_graph(frozen):
    """(GraphDef, count of folded batch norms): a frozen model (freeze_session, freeze_with_values;
    with an `embeddings` output) with its batch norms folded into the convolutions (fold_batch_norms)."""
    graph_def, folded = fold_batch_norms(frozen)
    return tf1.graph_util.extract_sub_graph(graph_def, ['embeddings'] + (
        ['phase_train'] if any(n.name == 'phase_train' for n in graph_def.node) else [])), folded


def write_graph_def(graph_def, output_file):
    """Write a GraphDef as a binary .pb, under a temporary name renamed into place."""
    out_dir = os.path.dirname(os.path.abspath(output_file))
    os.makedirs(out_dir, exist_ok=True)
    with atomic_open(output_file, 'wb') as f:
        f.write(graph_def.SerializeToString())


def embedding_subgraph(graph_def, model, image_size):
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
