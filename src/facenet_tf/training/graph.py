"""The part of the training graph both scripts share, as a typed object: step counter, placeholders,
the input queue and pipeline, the classic tensor names (`image_batch`, `input`, `label_batch`,
`phase_train`, `embeddings`), the network, the learning rate; then, after the script's loss, the
train op, the Saver, the summaries and the moving-average swap."""
import dataclasses
from typing import Any, Optional

from facenet_tf import input_pipeline
from facenet_tf.tf_setup import configure
from facenet_tf.training.optimizers import MovingAverageSwap, build_train_op
from facenet_tf.training.schedule import learning_rate_tensor

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1


@dataclasses.dataclass(eq=False)
class TrainingGraph:
    """Tensors and ops of a training graph. The first fields come from build_network_graph, the
    others from finish_graph; scripts subclass it for their loss-specific tensors."""
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
    summary_op: Any = None
    close_queue: Any = None
    average_swap: Optional[MovingAverageSwap] = None    # with --lfw_use_moving_averages


def train_control(args):
    """The pipeline control word of training images from the augmentation flags."""
    return input_pipeline.control_flags(args.random_crop, args.random_flip, args.random_rotate,
                                        args.use_fixed_image_standardization, random_erase=args.random_erase)


def build_network_graph(args, network, group_size, queue_capacity=100000, read_file=tf.io.read_file,
                        graph_class=TrainingGraph):
    """The shared part of a training graph (seeded with --seed), as a `graph_class` object that the
    script completes with its loss and finish_graph."""
    tf1.set_random_seed(args.seed)
    global_step = tf1.Variable(0, trainable=False, name='global_step')
    learning_rate_placeholder = tf1.placeholder(tf.float32, name='learning_rate')
    batch_size_placeholder = tf1.placeholder(tf.int32, name='batch_size')
    phase_train_placeholder = tf1.placeholder(tf.bool, name='phase_train')
    queue = input_pipeline.make_input_queue(group_size, capacity=queue_capacity)
    image_batch, label_batch = input_pipeline.create_input_pipeline(
        queue, args.image_size, args.nrof_preprocess_threads, batch_size_placeholder,
        capacity_images=4 * args.nrof_preprocess_threads * args.batch_size, read_file=read_file)
    image_batch = tf.identity(image_batch, 'image_batch')
    image_batch = tf.identity(image_batch, 'input')
    label_batch = tf.identity(label_batch, 'label_batch')
    prelogits, _ = network.inference(image_batch, args.keep_probability, phase_train=phase_train_placeholder,
                                     bottleneck_layer_size=args.embedding_size, weight_decay=args.weight_decay)
    embeddings = tf.nn.l2_normalize(prelogits, 1, 1e-10, name='embeddings')
    learning_rate = learning_rate_tensor(learning_rate_placeholder, global_step, args.learning_rate_decay_epochs,
                                         args.epoch_size, args.learning_rate_decay_factor)
    return graph_class(global_step=global_step, learning_rate_placeholder=learning_rate_placeholder,
                       batch_size_placeholder=batch_size_placeholder, phase_train_placeholder=phase_train_placeholder,
                       queue=queue, label_batch=label_batch, prelogits=prelogits, embeddings=embeddings,
                       learning_rate=learning_rate)


def finish_graph(args, graph, loss, log_histograms=True):
    """After the script's loss: the train op over every global variable (build_train_op), then
    add_run_ops. Returns graph."""
    graph.loss = loss
    graph.train_op, graph.saved, graph.averages = build_train_op(
        loss, graph.global_step, args.optimizer, graph.learning_rate, args.moving_average_decay,
        tf1.global_variables(), log_histograms)
    add_run_ops(args, graph)
    return graph


def add_run_ops(args, graph):
    """What both training graphs add after the train op: the Saver of graph.saved (the last 3
    checkpoints kept), the merged summaries, the op closing the input queue and, with
    --lfw_use_moving_averages, the MovingAverageSwap of graph.averages."""
    graph.saver = tf1.train.Saver(graph.saved, max_to_keep=3)
    graph.summary_op = tf1.summary.merge_all()
    graph.close_queue = graph.queue.queue.close(cancel_pending_enqueues=True)
    if args.lfw_use_moving_averages:
        graph.average_swap = MovingAverageSwap(graph.averages)
