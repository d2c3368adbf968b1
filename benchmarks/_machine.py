"""The machine a benchmark ran on, in one line: every figure in docs/ names its CPU with it."""
import os

FLAGS = ('avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_tile', 'amx_bf16', 'amx_int8')


def cpu_line():
    """'<model name>, <n> cores; flags: <those of FLAGS it has>' from /proc/cpuinfo."""
    name, flags = 'unknown CPU', set()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() == 'model name' and name == 'unknown CPU':
                    name = value.strip()
                elif key.strip() == 'flags' and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return '%s, %d cores; flags: %s' % (name, len(os.sched_getaffinity(0)),
                                        ' '.join(f for f in FLAGS if f in flags) or 'none of ' + ' '.join(FLAGS))
