"""The training graph both scripts build, as a typed object: step counter, placeholders, the input
queue and pipeline, the classic tensor names (`image_batch`, `input`, `label_batch`, `phase_train`,
`embeddings`, `total_loss`), the network and the script's loss on each tower (--num_gpus), the
learning rate, the train op, the Saver, the summaries and the moving-average swap."""
import dataclasses
from typing import Any, Optional

from facenet_tf.precision import resolve_precision
from facenet_tf.training import input_pipeline
from facenet_tf.tf_setup import configure
from facenet_tf.training import distributed, mixed_precision
from facenet_tf.training import towers as towers_lib
from facenet_tf.training.optimizers import HISTOGRAMS, MovingAverageSwap, build_train_op
from facenet_tf.training.schedule import learning_rate_tensor

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1


@dataclasses.dataclass(eq=False)
class TrainingGraph:
    """Tensors and ops of a training graph (build_training_graph); scripts subclass it for their
    loss-specific tensors."""
    global_step: Any
    learning_rate_placeholder: Any
    batch_size_placeholder: Any
    phase_train_placeholder: Any
    queue: Any                          # input_pipeline.InputQueue
    label_batch: Any
    prelogits: Any
    embeddings: Any
    learning_rate: Any                  # the decayed rate
    loss: Any = None                    # total loss, `total_loss`
    train_op: Any = None
    saved: Optional[list] = None        # the variables a checkpoint holds
    averages: Optional[dict] = None     # {moving average: variable}
    saver: Any = None                   # keeps the last 3 checkpoints
    state_saver: Any = None             # every global variable: the training state a run continues from
    summary_op: Any = None
    write_histograms: Any = None        # bool placeholder (default True) of the histograms in summary_op, or None
    close_queue: Any = None
    average_swap: Optional[MovingAverageSwap] = None    # with --lfw_use_moving_averages
    cluster: Any = None                 # distributed.Cluster of TF_CONFIG, or None
    replicas: Any = None                # distributed.SyncReplicas with synchronous updates in a cluster


def train_control(config):
    """The pipeline control word of training images from the augmentation flags."""
    return input_pipeline.control_flags(config.random_crop, config.random_flip, config.random_rotate,
                                        config.use_fixed_image_standardization, random_erase=config.random_erase)


@dataclasses.dataclass(eq=False)
class TowerLoss:
    """What a script's loss gives for one tower's slice of the batch (see build_training_graph)."""
    loss: Any                                               # the slice's total loss
    means: dict = dataclasses.field(default_factory=dict)   # graph attribute: scalar, weighted mean over towers
    sums: dict = dataclasses.field(default_factory=dict)    # graph attribute: scalar, summed over towers


def build_training_graph(config, network, group_size, tower_loss, queue_capacity=100000, read_file=tf.io.read_file,
                         graph_class=TrainingGraph, log_histograms=True):
    """The training graph (a `graph_class` object), seeded with --seed: step counter, placeholders and
    input pipeline (on /cpu:0), then per tower (--num_gpus, see towers.py) the network on its slice
    of the batch and `tower_loss(tower, prelogits, embeddings, labels)` -> TowerLoss, then the train
    op (the towers' gradients averaged), the Saver, the summaries. Each name in a TowerLoss's means
    and sums becomes an attribute of the graph. With one tower this is the one-device graph, built
    in the same order (so the same seeds give the same initial values and batches). In a cluster
    (TF_CONFIG, see distributed.py) the variables go to the parameter servers."""
    cluster = distributed.from_environment()
    with distributed.device_scope(cluster):
        return _build(config, network, group_size, tower_loss, queue_capacity, read_file, graph_class, log_histograms,
                      cluster)


def _build(config, network, group_size, tower_loss, queue_capacity, read_file, graph_class, log_histograms, cluster):
    tf1.set_random_seed(config.seed)
    with tf1.device(towers_lib.CPU):
        global_step = tf1.Variable(0, trainable=False, name='global_step')
        learning_rate_placeholder = tf1.placeholder(tf.float32, name='learning_rate')
        batch_size_placeholder = tf1.placeholder(tf.int32, name='batch_size')
        phase_train_placeholder = tf1.placeholder(tf.bool, name='phase_train')
        queue = input_pipeline.make_input_queue(group_size, capacity=queue_capacity)
        image_batch, label_batch = input_pipeline.create_input_pipeline(
            queue, config.image_size, config.nrof_preprocess_threads, batch_size_placeholder,
            capacity_images=4 * config.nrof_preprocess_threads * config.batch_size, read_file=read_file)
        image_batch = tf.identity(image_batch, 'image_batch')
        image_batch = tf.identity(image_batch, 'input')
        label_batch = tf.identity(label_batch, 'label_batch')
    num_towers = config.num_gpus
    towers = towers_lib.make_towers(num_towers)
    reduced_precision = resolve_precision(config.precision) != 'fp32'   # auto on a CPU without bf16 is fp32
    if num_towers == 1:
        slices, weights = [[image_batch, label_batch]], [None]
    else:
        slices, weights = towers_lib.split_batch([image_batch, label_batch], num_towers, group_size)
    learning_rate = None
    prelogits, embeddings, outputs = [], [], []
    loss_collection = tf1.get_collection_ref('losses')
    tower_entries = []
    for tower, (images, labels) in zip(towers, slices):
        with tower.scope():
            tower_prelogits, _ = network.inference(images, config.keep_probability, phase_train=phase_train_placeholder,
                                                   bottleneck_layer_size=config.embedding_size,
                                                   weight_decay=config.weight_decay)
            if reduced_precision:               # the loss and what leads to it stay float32
                tower_prelogits = mixed_precision.fp32_boundary(tower_prelogits)
            tower_embeddings = tf.nn.l2_normalize(tower_prelogits, 1, 1e-10, name='embeddings')
        if learning_rate is None:   # created where the one-device graph creates it (same op ids, same seeds)
            learning_rate = learning_rate_tensor(learning_rate_placeholder, global_step,
                                                 config.learning_rate_decay_epochs, config.epoch_size,
                                                 config.learning_rate_decay_factor)
        known = len(loss_collection)
        with tower.scope():
            outputs.append(tower_loss(tower, tower_prelogits, tower_embeddings, labels))
        tower_entries.append(loss_collection[known:])
        prelogits.append(tower_prelogits)
        embeddings.append(tower_embeddings)
    g = graph_class(global_step=global_step, learning_rate_placeholder=learning_rate_placeholder,
                    batch_size_placeholder=batch_size_placeholder, phase_train_placeholder=phase_train_placeholder,
                    queue=queue, label_batch=label_batch, prelogits=prelogits[0], embeddings=embeddings[0],
                    learning_rate=learning_rate, loss=outputs[0].loss)
    for name, value in list(outputs[0].means.items()) + list(outputs[0].sums.items()):
        setattr(g, name, value)
    if num_towers > 1:
        _combine_towers(g, outputs, weights, prelogits, embeddings, tower_entries)
    g.cluster = cluster
    g.replicas = distributed.optimizer_wrapper(cluster, config.replica_updates)
    g.train_op, g.saved, g.averages = build_train_op(
        g.loss, global_step, config.optimizer,
        learning_rate if g.replicas is None else distributed.shared_learning_rate(learning_rate),
        config.moving_average_decay, tf1.global_variables(),
        log_histograms, towers=None if num_towers == 1 else (towers, [o.loss for o in outputs], weights),
        optimizer_wrapper=g.replicas, loss_scaling=config.precision == 'fp16')
    add_run_ops(config, g)
    return g


def _combine_towers(g, outputs, weights, prelogits, embeddings, tower_entries):
    """The whole batch's tensors from the towers' (on /cpu:0, classic names): prelogits and
    `embeddings` concatenated, `total_loss` and the means weighted by slice, the sums added, and the
    'losses' collection (the classic loss summaries) holding the weighted means of the towers' entries."""
    with tf1.device(towers_lib.CPU):
        g.prelogits = tf.concat(prelogits, 0)
        g.embeddings = tf.concat(embeddings, 0, name='embeddings')
        g.loss = towers_lib.weighted_sum([o.loss for o in outputs], weights, name='total_loss')
        for name in outputs[0].means:
            setattr(g, name, towers_lib.weighted_sum([o.means[name] for o in outputs], weights, name=name))
        for name in outputs[0].sums:
            setattr(g, name, tf.add_n([o.sums[name] for o in outputs], name=name))
        collection = tf1.get_collection_ref('losses')
        per_tower = [entry for entries in tower_entries for entry in entries]
        combined = [towers_lib.weighted_sum(list(values), weights, name=values[0].op.name.split('/', 1)[1])
                    for values in zip(*tower_entries)]
        collection[:] = [c for c in collection if all(c is not entry for entry in per_tower)] + combined


def add_run_ops(config, graph):
    """What both training graphs add after the train op: the Saver of graph.saved (the last 3
    checkpoints kept), the Saver of the training state (every global variable), the merged
    summaries (with the switch of their histograms, when there are some), the op closing the input
    queue and, with --lfw_use_moving_averages, the MovingAverageSwap of graph.averages."""
    graph.saver = tf1.train.Saver(graph.saved, max_to_keep=3)
    graph.state_saver = tf1.train.Saver(tf1.global_variables(), max_to_keep=1)
    graph.summary_op = tf1.summary.merge_all()
    graph.write_histograms = next(iter(tf1.get_collection(HISTOGRAMS)), None)
    graph.close_queue = graph.queue.queue.close(cancel_pending_enqueues=True)
    if config.lfw_use_moving_averages:
        graph.average_swap = MovingAverageSwap(graph.averages)
