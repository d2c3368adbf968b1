"""TensorFlow set-up for this project, as an explicit call: `tf = tf_setup.configure()`.

configure() (idempotent, thread-safe, cheap after the first call) does, once per process:
- TF_CPP_MIN_LOG_LEVEL=2 unless set: no TensorFlow info/warning lines from C++;
- TF_ENABLE_ONEDNN_OPTS=1 unless set: oneDNN kernels, which TensorFlow leaves off on some x86 CPUs
  (they fuse convolution + batch norm + ReLU at inference, and the bf16 rewrite needs them). Read
  once, when TensorFlow loads: configure() must run before anything imports TensorFlow;
- imports TensorFlow with stderr closed (its C++ start-up lines are printed before any log setting
  applies, and would break the scripts' one-line error contract) and sets its Python logger to ERROR;
  the GPU platform is probed there too (`list_physical_devices('GPU')`, free on the CPU build): on
  a machine without a CUDA driver the `tensorflow` wheel prints `failed call to cuInit` (an E-level
  line) when its devices are first listed, i.e. at the first session, which would otherwise reach
  every script's output;
- leaves Keras to TensorFlow's lazy loader: `import tensorflow` otherwise imports Keras 3 eagerly
  (and with it scikit-learn wrappers and IPython), about a quarter of the import's CPU time
  (1.3-1.6 s of 5-6 s measured on the 2-core machine), which no tool here uses; `tf.keras` still
  works, imported on first use;
- switches to TF1 graph semantics (tf.compat.v1.disable_v2_behavior: graph mode, reference
  variables, Switch/Merge control flow), as the classic code and the published graphs were built.

The scripts call it before building graphs; the library modules that build graphs get TensorFlow
through it too, so code importing them directly (tests, notebooks) gets the same set-up.
Modules that do not need TensorFlow never call it, so tools like make_record.py start without it.

session_config() is the one builder of session settings (precision, threads, GPU memory, devices);
inference_session() opens the session a tool runs a model in, from the shared flags
(add_inference_arguments: --precision, --backend, --gpu_memory_fraction, --allow_growth).
"""
import os
import sys
import threading

from facenet_tf import precision as precision_lib
from facenet_tf.cli import add_gpu_memory_arguments

_lock = threading.Lock()
_tf = None


EAGER_KERAS_MODULE = 'keras.src.optimizers'  # what `import tensorflow` imports eagerly when it can


def _import_quietly():
    """Import TensorFlow and list its GPUs with file descriptor 2 pointed at /dev/null, without its
    eager Keras import (a None entry in sys.modules makes that import fail, which TensorFlow ignores)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    blocked = EAGER_KERAS_MODULE not in sys.modules
    try:
        os.dup2(devnull, 2)
        if blocked:
            sys.modules[EAGER_KERAS_MODULE] = None
        import tensorflow
        tensorflow.config.list_physical_devices('GPU')
    finally:
        if blocked:
            sys.modules.pop(EAGER_KERAS_MODULE, None)
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tensorflow


def configure():
    """Set up TensorFlow for the project (see the module doc) and return the `tensorflow` module."""
    global _tf
    if _tf is not None:
        return _tf
    with _lock:
        if _tf is None:
            os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
            os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
            tf = sys.modules.get('tensorflow') or _import_quietly()
            tf.get_logger().setLevel('ERROR')
            tf.compat.v1.disable_v2_behavior()
            _tf = tf
    return _tf


def is_configured():
    return _tf is not None


def session_config(precision='fp32', intra_op_threads=0, inter_op_threads=0, gpu_memory_fraction=None,
                   allow_growth=False, device_count=None):
    """The tf.compat.v1.ConfigProto of a session: `precision` 'fp32', 'bf16' (the oneDNN bfloat16
    rewrite; prints the bf16 warning once when it cannot help, see facenet_tf.precision), 'auto'
    (bf16 where the CPU computes it natively, else fp32: precision.resolve_precision) or, for
    training, 'fp16' (the float16 rewrite; GPUs only, else a FaceNetError: require_precision), threads
    inside an op and ops at a time (0 = TensorFlow's default, -1 inter-op = run in the calling
    thread), the GPU memory per process (fraction, and allow_growth: allocate as needed; no effect
    on a CPU) and device_count ({'CPU': n} for n logical CPU devices, e.g. the towers of --num_gpus
    on a machine without GPUs)."""
    if precision not in precision_lib.TRAINING_PRECISIONS:
        raise ValueError('precision must be one of %s, got %r' % (', '.join(precision_lib.TRAINING_PRECISIONS),
                                                                 precision))
    tf1 = configure().compat.v1
    precision = precision_lib.resolve_precision(precision)
    config = tf1.ConfigProto(intra_op_parallelism_threads=intra_op_threads,
                             inter_op_parallelism_threads=inter_op_threads,
                             allow_soft_placement=True, device_count=device_count or {})
    if gpu_memory_fraction is not None:
        config.gpu_options.per_process_gpu_memory_fraction = gpu_memory_fraction
    config.gpu_options.allow_growth = bool(allow_growth)
    from tensorflow.core.protobuf.rewriter_config_pb2 import RewriterConfig
    if precision == 'bf16':
        precision_lib.warn_precision(precision)
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = RewriterConfig.ON
    elif precision == 'fp16':
        require_precision(precision)
        config.graph_options.rewrite_options.auto_mixed_precision = RewriterConfig.ON
    return config


def require_precision(precision):
    """Raise FaceNetError when `precision` cannot run on this machine: fp16 without a GPU (TensorFlow
    2.21's CPU emulation of the float16 rewrite crashes the process on the training graphs)."""
    if precision == 'fp16' and not configure().config.list_physical_devices('GPU'):
        from facenet_tf.errors import FaceNetError
        raise FaceNetError('--precision fp16 needs a GPU (there is none here); on a CPU train with bf16 '
                           '(native with avx512_bf16/amx_bf16) or fp32')


def session_config_from_args(args, device_count=None, precision=None):
    """session_config() from a script's parsed flags: --precision (unless `precision` is given),
    --intra_op_threads, --inter_op_threads, --gpu_memory_fraction and --allow_growth, each where the
    script has it (args None: the defaults)."""
    return session_config(precision or getattr(args, 'precision', 'fp32'), getattr(args, 'intra_op_threads', 0),
                          getattr(args, 'inter_op_threads', 0), getattr(args, 'gpu_memory_fraction', None),
                          getattr(args, 'allow_growth', False), device_count)


BACKENDS = ('tf', 'onnx')   # --backend: what runs a .pb or checkpoint folder (runtimes.open_model)


def add_inference_arguments(parser, precision='fp32'):
    """The flags every tool that runs a model shares: --precision (default `precision`), --backend
    (what runs a .pb or checkpoint folder: runtimes.open_model reads it) and the classic
    --gpu_memory_fraction and --allow_growth; inference_session() reads them."""
    precision_lib.add_precision_argument(parser, precision)
    parser.add_argument('--backend', choices=BACKENDS, default='tf',
                        help='What runs a .pb or checkpoint folder: tf (TensorFlow, the classic path) or onnx '
                             '(onnxruntime, fp32, on the model converted once into the cache; needs tf2onnx). An '
                             '.onnx file always runs in onnxruntime, a .tflite file only with tf.')
    add_gpu_memory_arguments(parser)
    return parser


def inference_session(args=None, graph=None, precision=None):
    """A tf.compat.v1.Session to run a model in, on `graph` (default: the current default graph),
    its settings from a tool's parsed flags (see session_config_from_args; args None: defaults);
    `precision` overrides --precision (library callers without flags)."""
    return configure().compat.v1.Session(graph=graph, config=session_config_from_args(args, precision=precision))
