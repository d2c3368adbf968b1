"""What a run leaves beside its outputs: revision_info.txt and arguments.txt, as the classic tools."""
import os
import subprocess

from facenet_tf.files import write_atomic
from facenet_tf.tf_setup import configure

SRC_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git(src_path, *cmd):
    try:
        out = subprocess.run(('git',) + cmd, cwd=src_path, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return 'unavailable (%s)' % type(e).__name__
    return out.stdout.strip() if out.returncode == 0 else 'unavailable (%s)' % out.stderr.strip()


def store_revision_info(src_path, output_dir, arg_string):
    """revision_info.txt: the command line, TensorFlow version, git revision and local changes."""
    tf = configure()
    src_path = src_path or SRC_ROOT
    text = ('arguments: %s\n--------------------\n'
            'tensorflow version: %s\n--------------------\n'
            'git hash: %s\n--------------------\n'
            '%s\n' % (arg_string, tf.__version__, _git(src_path, 'rev-parse', 'HEAD'),
                      _git(src_path, 'diff', 'HEAD')))
    write_atomic(os.path.join(output_dir, 'revision_info.txt'), text)


def write_arguments_to_file(args, filename):
    """One `name: value` line per argument (classic arguments.txt)."""
    write_atomic(filename, ''.join('%s: %s\n' % (key, str(value)) for key, value in vars(args).items()))
