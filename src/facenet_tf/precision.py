"""Session settings for the numeric precision of the graph: fp32, or bf16 through oneDNN.

'bf16' turns on the grappler rewrite that runs convolutions and matrix products in bfloat16 on
CPUs with oneDNN (variables and the fed/fetched tensors stay float32). Embeddings stay within
cosine 0.9999 of fp32. It needs oneDNN (TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow loads) and is
native only on CPUs with the avx512_bf16 or amx_bf16 instructions; elsewhere it is emulated and
slower than fp32 (more CPU time per image on an AVX2 CPU). `tf_setup.session_config('bf16')` prints
one warning line on stderr, once per process, when that is the case (`bf16_warning()` gives the
reason). 'auto' (resolve_precision) is bf16 on those CPUs with oneDNN on, fp32 elsewhere: never
the emulated path.

The training scripts also take 'fp16' (TRAINING_PRECISIONS): grappler's float16 rewrite, with
dynamic loss scaling (training/mixed_precision.py), on GPUs only (tf_setup.session_config refuses it
without one: TensorFlow's CPU emulation of it crashes on the training graphs).
This module imports nothing of the project's: tf_setup depends on it.
"""
import sys


PRECISIONS = ('fp32', 'bf16', 'auto')   # auto: bf16 where the CPU computes it natively, else fp32
TRAINING_PRECISIONS = ('fp32', 'bf16', 'fp16', 'auto')  # fp16: GPUs, with loss scaling
NATIVE_BF16_FLAGS = ('avx512_bf16', 'amx_bf16')  # /proc/cpuinfo flags of CPUs that compute in bf16

_warned = False  # the bf16 warning is printed once per process


def add_precision_argument(parser, default='fp32'):
    """Add the scripts' `--precision {fp32,bf16,auto}` option to an argparse parser."""
    parser.add_argument('--precision', choices=PRECISIONS, default=default,
                        help='Arithmetic of the network: fp32 (exact) or bf16 (embeddings within cosine '
                             '0.9999 of fp32; faster only on CPUs with avx512_bf16/amx_bf16, elsewhere '
                             'emulated, slower, and a warning is printed); auto: bf16 on those CPUs, fp32 '
                             'elsewhere (default: %(default)s).')
    return parser


def add_training_precision_argument(parser):
    """Add the training scripts' `--precision {fp32,bf16,fp16,auto}` option."""
    parser.add_argument('--precision', choices=TRAINING_PRECISIONS, default='fp32',
                        help='Arithmetic of the network while training (mixed precision: variables, optimizer '
                             'state, moving averages and the loss stay fp32): fp32 (classic); bf16 (convolutions '
                             'and products in bfloat16, native on CPUs with avx512_bf16/amx_bf16, else emulated and '
                             'slower); fp16 (GPUs only, with dynamic loss scaling); auto: bf16 where '
                             'native, else fp32. The per-epoch check runs at the same precision.')
    return parser


def _cpu_flags():
    """The CPU's flags from /proc/cpuinfo (a set), or None when they cannot be read."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return None


def _onednn_enabled():
    """Whether TensorFlow (imported by tf_setup.configure before any session is built) runs oneDNN."""
    from tensorflow.python.util import _pywrap_util_port
    return bool(_pywrap_util_port.IsMklEnabled())


def bf16_warning(flags=None, onednn=None):
    """One line saying why bf16 will not help on this machine, or None when it runs natively.

    flags: the CPU flags (a set of /proc/cpuinfo names; None = this machine's, and no warning when
    they cannot be read); onednn: whether oneDNN is on (None = ask the TensorFlow already imported).
    """
    if onednn is None:
        onednn = _onednn_enabled()
    if not onednn:
        return 'bf16 has no effect: oneDNN is off (set TF_ENABLE_ONEDNN_OPTS=1 before starting)'
    if flags is None:
        flags = _cpu_flags()
        if flags is None:
            return None
    if not any(flag in flags for flag in NATIVE_BF16_FLAGS):
        return 'bf16 is emulated on this CPU (no avx512_bf16/amx_bf16) and slower than fp32'
    return None


def resolve_precision(precision, flags=None, onednn=None):
    """The precision a session runs at: 'auto' is 'bf16' when the CPU computes it natively (one of
    NATIVE_BF16_FLAGS among `flags`, and oneDNN on), else 'fp32'; 'fp32' and 'bf16' stay as given.
    flags/onednn as in bf16_warning (None: this machine's; unreadable flags count as not native)."""
    if precision != 'auto':
        return precision
    if flags is None:
        flags = _cpu_flags() or set()
    if not any(flag in flags for flag in NATIVE_BF16_FLAGS):
        return 'fp32'
    if onednn is None:
        onednn = _onednn_enabled()
    return 'bf16' if onednn else 'fp32'


def warn_precision(precision, stream=None):
    """For precision 'bf16', print 'warning: <bf16_warning()>' on stderr once per process; returns
    whether it printed. Called by session_config, so every script run with --precision bf16 warns."""
    global _warned
    if precision != 'bf16' or _warned:
        return False
    message = bf16_warning()
    if message is None:
        return False
    _warned = True
    stream = stream or sys.stderr
    stream.write('warning: %s\n' % message)
    stream.flush()
    return True
