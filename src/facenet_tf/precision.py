"""Session settings for the numeric precision of the graph: fp32, or bf16 through oneDNN.

'bf16' turns on the grappler rewrite that runs convolutions and matrix products in bfloat16 on
CPUs with oneDNN (variables and the fed/fetched tensors stay float32). Embeddings stay within
cosine 0.9999 of fp32. It needs oneDNN (TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow loads) and is
faster than fp32 only on CPUs with AVX-512 (native bf16 with AVX512_BF16 / AMX); `bf16_warning()`
says when it will not help here.
"""
import tensorflow as tf
from tensorflow.python.util import _pywrap_util_port
from tensorflow.core.protobuf import rewriter_config_pb2

PRECISIONS = ('fp32', 'bf16')


def session_config(precision='fp32', intra_op_threads=0, inter_op_threads=0):
    """A tf.compat.v1.ConfigProto for `precision` ('fp32' or 'bf16'); 0 threads = TF's default."""
    if precision not in PRECISIONS:
        raise ValueError('precision must be one of %s, got %r' % (', '.join(PRECISIONS), precision))
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=intra_op_threads,
                                      inter_op_parallelism_threads=inter_op_threads,
                                      allow_soft_placement=True)
    if precision == 'bf16':
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = \
            rewriter_config_pb2.RewriterConfig.ON
    return config


def add_precision_argument(parser):
    """Add the scripts' `--precision {fp32,bf16}` option to an argparse parser."""
    parser.add_argument('--precision', choices=PRECISIONS, default='fp32',
                        help='Arithmetic of the network: fp32 (exact) or bf16 (faster on CPUs with '
                             'bfloat16 support, embeddings within cosine 0.9999 of fp32).')
    return parser


def _cpu_flags():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return None


def bf16_warning():
    """One line saying why bf16 will not speed this machine up, or None when it should."""
    if not _pywrap_util_port.IsMklEnabled():
        return ('bf16 has no effect: oneDNN is off (set TF_ENABLE_ONEDNN_OPTS=1 before starting)')
    flags = _cpu_flags()
    if flags is not None and 'avx512f' not in flags:
        return 'this CPU has no AVX-512: bf16 runs on a slow generic path, fp32 is faster here'
    return None
