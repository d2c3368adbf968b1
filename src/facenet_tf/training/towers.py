"""Data-parallel towers on one machine (`--num_gpus N`): the batch is cut into N slices, each slice
runs the network and the loss on its own device with the one set of variables (variable scope
reuse), and the towers' gradients are averaged, weighted by their slice's share of the batch, before
the one update. For a loss that is a mean over the batch (cross-entropy, margin losses, classic
triplet loss) that average is the gradient of the whole batch on one device (batch norm, which
normalises each slice by its own moments, and in-batch triplet mining, which mines inside a slice,
are the exceptions, as in every tower implementation).

Devices: `/gpu:i` when at least N GPUs are visible (fewer is an error); without GPUs the logical CPU
devices `/cpu:0..N-1` that session_device_count() asks the session for (so the mechanics run and
are tested on a CPU). Variables live on `/cpu:0` with N > 1 (the classic multi-GPU layout; every
tower reads them), the input pipeline always on `/cpu:0`. With N = 1 the graph is the one-device
graph: no tower name scope, the network on `/gpu:0` when a GPU is visible."""
import contextlib

from facenet_tf.errors import FaceNetError
from facenet_tf.tf_setup import configure

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1

CPU = '/cpu:0'
VARIABLE_OPS = frozenset(['Variable', 'VariableV2', 'VarHandleOp', 'AutoReloadVariable'])


def visible_gpus():
    """The number of GPUs TensorFlow sees (0 with the CPU build or without CUDA)."""
    return len(tf.config.list_physical_devices('GPU'))


def tower_devices(num_towers, nrof_gpus=None):
    """The device of each tower: GPUs when there are enough of them, logical CPU devices when there
    is no GPU (a single tower then gets None: no device scope, the one-device graph). Fewer GPUs
    than towers is an error."""
    nrof_gpus = visible_gpus() if nrof_gpus is None else nrof_gpus
    if nrof_gpus >= num_towers:
        return ['/gpu:%d' % i for i in range(num_towers)]
    if nrof_gpus > 0:
        raise FaceNetError('--num_gpus %d, but TensorFlow sees %d GPU%s' % (num_towers, nrof_gpus,
                           '' if nrof_gpus == 1 else 's'))
    if num_towers == 1:
        return [None]
    return ['/cpu:%d' % i for i in range(num_towers)]


def session_device_count(num_towers, nrof_gpus=None):
    """The ConfigProto device_count a session needs for the towers: {'CPU': N} when they run on
    logical CPU devices, else {} (TensorFlow's defaults)."""
    devices = tower_devices(num_towers, nrof_gpus)
    if devices[0] is not None and devices[0].startswith('/cpu'):
        return {'CPU': num_towers}
    return {}


def split_batch(tensors, num_towers, group_size=1):
    """Cut each of `tensors` (same first dimension) into num_towers consecutive slices of whole groups
    of group_size rows (triplets stay together), as even as the group count allows. Returns
    (slices: one list of tensors per tower, weights: each slice's share of the batch, float32)."""
    batch = tf.shape(tensors[0])[0]
    groups = batch // group_size
    bounds = [(groups * i // num_towers) * group_size for i in range(num_towers)] + [batch]
    total = tf.cast(tf.maximum(batch, 1), tf.float32)
    slices = [[t[bounds[i]:bounds[i + 1]] for t in tensors] for i in range(num_towers)]
    weights = [tf.cast(bounds[i + 1] - bounds[i], tf.float32) / total for i in range(num_towers)]
    return slices, weights


def _variables_on_cpu(device):
    """A device function: variables on /cpu:0, every other op on `device`."""
    def place(op):
        return CPU if op.type in VARIABLE_OPS else device
    return place


class Tower(object):
    """One tower: its index, device and name scope. `scope()` enters them (re-entrant: the same name
    scope each time); with several towers, towers after the first reuse the variables."""

    def __init__(self, index, device, towers):
        self.index = index
        self.device = device
        self.towers = towers                # every tower of the graph, this one included
        self.regularization_terms = []

    @contextlib.contextmanager
    def scope(self):
        several = len(self.towers) > 1
        with contextlib.ExitStack() as stack:
            if self.device is not None:
                stack.enter_context(tf1.device(_variables_on_cpu(self.device) if several else self.device))
            if several:
                stack.enter_context(tf1.variable_scope(tf1.get_variable_scope(), reuse=self.index > 0 or None))
                stack.enter_context(tf1.name_scope('tower_%d/' % self.index))
            yield self

    def add_regularization_loss(self, term):
        """A loss term of this tower's slice (prelogits norm, center loss) for the
        REGULARIZATION_LOSSES collection; the other towers leave it out of their total."""
        self.regularization_terms.append(term)
        tf1.add_to_collection(tf1.GraphKeys.REGULARIZATION_LOSSES, term)

    def regularization_losses(self):
        """The REGULARIZATION_LOSSES of this tower's total: weight decay (added once, when the
        variables were created) and its own terms, not the per-slice terms of the other towers."""
        others = {id(t) for other in self.towers if other is not self for t in other.regularization_terms}
        return [t for t in tf1.get_collection(tf1.GraphKeys.REGULARIZATION_LOSSES) if id(t) not in others]


def make_towers(num_towers, nrof_gpus=None):
    """The towers of a graph, on tower_devices()."""
    towers = []
    towers.extend(Tower(i, device, towers) for i, device in enumerate(tower_devices(num_towers, nrof_gpus)))
    return towers


def weighted_sum(values, weights, name=None):
    """sum_i weights[i] * values[i] of scalar tensors (an empty slice, weight 0, contributes 0 even
    when its value is NaN)."""
    terms = [tf.where(w > 0.0, w * tf.cast(v, tf.float32), 0.0) for v, w in zip(values, weights)]
    return tf.add_n(terms, name=name)


def _scaled(grad, weight):
    return tf.IndexedSlices(grad.values * weight, grad.indices, grad.dense_shape)


def average_gradients(tower_grads, weights):
    """The weighted average of the towers' [(gradient, variable)] lists (same variables, same order),
    on /cpu:0. Sparse gradients (IndexedSlices of gathered rows) stay sparse when every tower's is:
    their scaled rows are concatenated. A variable no tower reaches keeps a None gradient."""
    averaged = []
    with tf1.device(CPU), tf1.name_scope('average_gradients'):
        for pairs in zip(*tower_grads):
            var = pairs[0][1]
            grads = [(g, w) for (g, _), w in zip(pairs, weights) if g is not None]
            if not grads:
                averaged.append((None, var))
            elif all(isinstance(g, tf.IndexedSlices) for g, _ in grads):
                scaled = [_scaled(g, w) for g, w in grads]
                averaged.append((tf.IndexedSlices(tf.concat([s.values for s in scaled], 0),
                                                  tf.concat([s.indices for s in scaled], 0),
                                                  scaled[0].dense_shape), var))
            else:
                averaged.append((tf.add_n([tf.convert_to_tensor(g) * w for g, w in grads]), var))
    return averaged


def tower_gradients(opt, towers, losses, weights, variables):
    """Each tower's gradients of its loss on its device (backward ops beside their forward ops),
    averaged by average_gradients."""
    tower_grads = []
    for tower, loss in zip(towers, losses):
        with tower.scope():
            tower_grads.append(opt.compute_gradients(loss, variables, colocate_gradients_with_ops=True))
    return average_gradients(tower_grads, weights)
