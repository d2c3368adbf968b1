"""Helpers of the hostile-input tests (tests/test_hostile_*.py): run a tool as a user does, and check
the promise of docs/security.md: nothing run, nothing outside touched, nothing lost, bounded memory,
one line and the right exit code.

Every crafted file is built at test time by the test that uses it; nothing hostile is committed.
"""
import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, 'src')


def lfw_photo(data_dir, person, number):
    """The path of one original LFW photo under ../shared/data."""
    return os.path.join(data_dir, 'lfw_deepfunneled', person, '%s_%04d.jpg' % (person, number))


def copy_file(src, dst):
    """Copy src to dst (a path), creating dst's folder; returns dst as a string."""
    os.makedirs(os.path.dirname(str(dst)), exist_ok=True)
    shutil.copyfile(src, str(dst))
    return str(dst)


class ToolRun:
    """What one run of a tool did: exit code, printed text, and (subprocess runs) peak memory."""

    def __init__(self, code, out, err, peak_mib=None):
        self.code, self.out, self.err, self.peak_mib = code, out, err, peak_mib

    def __repr__(self):
        return 'ToolRun(code=%r, peak_mib=%r)\n--- stdout\n%s--- stderr\n%s' % (
            self.code, self.peak_mib, self.out, self.err)


def script_path(script):
    """`align/align_dataset_mtcnn.py` or `compare.py` -> the file under src/."""
    return os.path.join(SRC, script)


# Runs the tool as its own child and reports that child's peak memory: Linux carries a process's
# peak over fork and exec, so a tool forked straight from a large test process would report the
# test's memory; forked from this small launcher it reports its own.
_LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], 'w') as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
if code < 0:
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


def run_tool(script, argv, timeout=300, env=None, cwd=ROOT, stdin=subprocess.DEVNULL):
    """Run `python src/<script> argv...` as a separate process; its own peak resident memory (MiB)
    is read from the kernel's accounting of that one process (wait4 in a small launcher)."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    full_env.update(env or {})
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile('r') as peak:
        proc = subprocess.Popen([sys.executable, '-c', _LAUNCHER, peak.name, sys.executable, script_path(script)]
                                + [str(a) for a in argv], stdout=out, stderr=err, stdin=stdin, cwd=cwd,
                                env=full_env, start_new_session=True)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            raise
        out.seek(0)
        err.seek(0)
        kib = peak.read().strip()
        return ToolRun(proc.returncode, out.read().decode(errors='replace'), err.read().decode(errors='replace'),
                       int(kib) / 1024.0 if kib else None)


def run_main(module, argv):
    """Run `module.main(module.parse_arguments(argv))` in this process through facenet_tf.cli.run, as
    the script's `__main__` does: returns a ToolRun (exit code, stdout, stderr). argparse errors
    (SystemExit) become their exit code too."""
    from facenet_tf.cli import run
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = run(module.main, module.parse_arguments([str(a) for a in argv]),
                       prog=os.path.basename(getattr(module, '__file__', module.__name__)))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 2
    return ToolRun(code, out.getvalue(), err.getvalue())


def assert_one_line_error(result, *fragments, code=None):
    """The run failed (non-zero, or `code`) with exactly one `error:` line on stderr, no traceback,
    and that line holds every fragment (e.g. the file's name and what is wrong)."""
    assert 'Traceback' not in result.err and 'Traceback' not in result.out, result
    if code is None:
        assert result.code != 0, result
    else:
        assert result.code == code, result
    lines = [line for line in result.err.splitlines() if line.strip()]
    errors = [line for line in lines if 'error:' in line]
    assert len(errors) == 1, result
    for fragment in fragments:
        assert str(fragment) in errors[0], (fragment, result)
    return errors[0]


def tree_hashes(path):
    """{relative path: sha256} of every regular file below `path` (or of the file `path` itself)."""
    path = str(path)
    if os.path.isfile(path):
        return {os.path.basename(path): _sha256(path)}
    hashes = {}
    for folder, _, names in os.walk(path):
        for name in names:
            full = os.path.join(folder, name)
            if os.path.isfile(full) and not os.path.islink(full):
                hashes[os.path.relpath(full, path)] = _sha256(full)
    return hashes


def _sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def secret_file(folder, name='secret.key'):
    """A file outside the user's folders whose bytes must never appear in any output; returns
    (path, bytes)."""
    data = b'SECRET-' + os.urandom(16).hex().encode() + b'-END'
    path = os.path.join(str(folder), name)
    with open(path, 'wb') as f:
        f.write(data)
    return path, data


def assert_not_in_tree(data, path):
    """No file below `path` holds the bytes `data`."""
    for folder, _, names in os.walk(str(path)):
        for name in names:
            full = os.path.join(folder, name)
            if os.path.isfile(full):
                with open(full, 'rb') as f:
                    assert data not in f.read(), full
