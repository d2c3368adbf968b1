"""The small shared helpers: atomic writes, argparse validators, the library exception."""
import argparse
import os

import pytest

from facenet_tf import cli, errors, files


def test_write_atomic_replaces_only_when_complete(tmp_path):
    path = str(tmp_path / 'out.txt')
    files.write_atomic(path, 'first\n')
    with pytest.raises(RuntimeError):
        with files.atomic_open(path) as f:
            f.write('partial')
            raise RuntimeError('interrupted')
    assert open(path).read() == 'first\n'
    assert os.listdir(str(tmp_path)) == ['out.txt']
    files.write_atomic(path, b'\x00bytes')
    assert open(path, 'rb').read() == b'\x00bytes'


def test_temporary_name_is_recognised_for_cleanup(tmp_path):
    tmp = files.temporary_name(str(tmp_path / 'a.png'))
    m = files.TEMPORARY_RE.match(os.path.basename(tmp))
    assert m is not None and int(m.group(1)) == os.getpid()
    assert os.path.dirname(tmp) == str(tmp_path)


def test_validators():
    parser = argparse.ArgumentParser()
    parser.add_argument('--n', type=cli.positive_int)
    parser.add_argument('--k', type=cli.int_at_least(2))
    parser.add_argument('--q', type=cli.int_between(1, 100))
    parser.add_argument('--t', type=cli.non_negative_float)
    parser.add_argument('--f', type=cli.fraction)
    parser.add_argument('--p', type=cli.positive_float)
    args = parser.parse_args(['--n', '1', '--k', '2', '--q', '100', '--t', '0', '--f', '1', '--p', '0.5'])
    assert (args.n, args.k, args.q, args.t, args.f, args.p) == (1, 2, 100, 0.0, 1.0, 0.5)
    for bad in (['--n', '0'], ['--n', 'x'], ['--k', '1'], ['--q', '101'], ['--t', '-1'], ['--f', '1.5'],
                ['--t', 'nan'], ['--p', '0'], ['--p', 'nan']):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_validator_messages():
    with pytest.raises(argparse.ArgumentTypeError, match='must be at least 1, got 0'):
        cli.positive_int('0')
    with pytest.raises(argparse.ArgumentTypeError, match="invalid int value: 'a'"):
        cli.non_negative_int('a')
    with pytest.raises(argparse.ArgumentTypeError, match='must be > 0, got -1'):
        cli.positive_float('-1')


def test_doc_parser_keeps_the_docstring_as_help():
    parser = cli.doc_parser('Does one thing.\n\nExample:\n  tool.py model x\n')
    cli.add_model_argument(parser)
    assert parser.description == 'Does one thing.' and parser.epilog == 'Example:\n  tool.py model x'
    assert 'Example:\n  tool.py model x' in parser.format_help()
    assert parser.parse_args(['m.pb']).model == 'm.pb'


def test_library_error_is_the_one_cli_error(capsys):
    assert not hasattr(cli, 'UserError')   # one exception name: errors.FaceNetError

    def main(args):
        raise errors.FaceNetError('bad input')
    assert cli.run(main, None, prog='tool') == 2
    assert capsys.readouterr().err == 'tool: error: bad input\n'


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, 'src')


def _python(code, **env):
    import subprocess
    import sys
    environ = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
    environ.update(env)
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=SRC, env=environ)


def test_tools_without_tensorflow_do_not_import_it():
    proc = _python('import sys, facenet_tf, facenet_tf.cli, facenet_tf.errors, facenet_tf.files, '
                   'facenet_tf.pairs, facenet_tf.precision, facenet_tf.tf_setup, make_record, generate_pairs, '
                   'validate_on_lfw, lfw\n'
                   'make_record.parse_arguments(["a", "b"]); validate_on_lfw.parse_arguments(["a", "b"])\n'
                   'print(sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"))')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == '[]'


def test_configure_is_quiet_and_sets_tf1_semantics():
    proc = _python('from facenet_tf import tf_setup\n'
                   'tf = tf_setup.configure()\n'
                   'assert tf_setup.configure() is tf and tf_setup.is_configured()\n'
                   'tf1 = tf.compat.v1\n'
                   'assert not tf.executing_eagerly()\n'
                   'with tf1.Graph().as_default():\n'
                   '    x = tf1.placeholder(tf.float32, [None, 3])\n'
                   '    v = tf1.get_variable("v", [3], initializer=tf1.ones_initializer())\n'
                   '    y = tf.reduce_sum(tf.matmul(x * v, tf.ones([3, 2])))\n'
                   '    with tf1.Session(config=tf_setup.session_config()) as sess:\n'
                   '        sess.run(tf1.global_variables_initializer())\n'
                   '        sess.run(y, {x: [[1.0, 2.0, 3.0]]})\n'
                   'import os, sys\n'
                   'keras_at_import = "keras" in sys.modules\n'
                   'dense = tf.keras.layers.Dense(2)\n'
                   'print(os.environ["TF_ENABLE_ONEDNN_OPTS"], type(v).__name__, keras_at_import, '
                   'type(dense).__name__, sys.modules.get(tf_setup.EAGER_KERAS_MODULE) is not None)')
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ''
    # Keras is not imported with TensorFlow, and tf.keras still works (imported on first use)
    assert proc.stdout.split() == ['1', 'RefVariable', 'False', 'Dense', 'True']


def test_session_config():
    from facenet_tf import tf_setup
    config = tf_setup.session_config('fp32', 3, 2, gpu_memory_fraction=0.5)
    assert (config.intra_op_parallelism_threads, config.inter_op_parallelism_threads) == (3, 2)
    assert config.gpu_options.per_process_gpu_memory_fraction == 0.5
    assert not config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16
    args = argparse.Namespace(precision='bf16', intra_op_threads=1, gpu_memory_fraction=1.0)
    config = tf_setup.session_config_from_args(args)
    assert config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16
    assert (config.intra_op_parallelism_threads, config.inter_op_parallelism_threads) == (1, 0)
    with pytest.raises(ValueError):
        tf_setup.session_config('fp8')


def test_one_model_not_found_message(tmp_path):
    from facenet_tf import model_io
    missing = str(tmp_path / 'missing.pb')
    expected = 'model not found: %s (give a frozen .pb file or a checkpoint folder)' % missing
    for call in (lambda: model_io.find_model(missing), lambda: model_io.load_model(missing),
                 lambda: model_io.load_for_inference(missing, None),
                 lambda: model_io.export_tflite(missing, str(tmp_path / 'x.tflite'))):
        with pytest.raises(errors.FaceNetError) as e:
            call()
        assert str(e.value) == expected
