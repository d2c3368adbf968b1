"""Freezing the model loaded in a session into an inference GraphDef: variables become constants,
the input queues become placeholders, `phase_train` is fixed to False and the batch-norm training
branches it selected are folded away (fold_constant_switches); write_graph_def writes the .pb.
facenet_tf.model_io builds freeze_model and export_tflite on it; keras_import and the tests freeze
the graphs they build with it."""
import os

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
