"""The package and the classic surface: every classic script is a shell over its tool module (same
flags, same main), the classic imports resolve to the package, the `facenet-<tool>` commands follow
one scheme, and the installed wheel holds only `facenet_tf` and runs from any folder without src/."""
import glob
import os
import runpy
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, 'src')
with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as _f:
    PYPROJECT = tomllib.load(_f)
COMMANDS = PYPROJECT['project']['scripts']
# classic script (under src/) -> the tool module it is a shell of
CLASSIC = {
    'align/align_dataset_mtcnn.py': 'facenet_tf.align.align_dataset_mtcnn',
    'validate_on_lfw.py': 'facenet_tf.validate',
    'compare.py': 'facenet_tf.compare',
    'train_tripletloss.py': 'facenet_tf.train_triplet',
    'train_softmax.py': 'facenet_tf.train_softmax',
    'recognize.py': 'facenet_tf.recognize',
    'cluster.py': 'facenet_tf.cluster',
    'classifier.py': 'facenet_tf.classifier',
    'freeze_graph.py': 'facenet_tf.freeze',
    'import_keras_model.py': 'facenet_tf.import_model',
    'export_embeddings.py': 'facenet_tf.export_embeddings',
    'export_tflite.py': 'facenet_tf.export_tflite',
    'export_onnx.py': 'facenet_tf.export_onnx',
    'make_record.py': 'facenet_tf.make_record',
    'generate_pairs.py': 'facenet_tf.generate_pairs',
    'evaluate_identification.py': 'facenet_tf.evaluate_identification',
    'calibrate_threshold.py': 'facenet_tf.calibrate',
    'export_mtcnn.py': 'facenet_tf.export_mtcnn',
}


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    env.pop('PYTHONPATH', None)
    return env


def test_every_script_under_src_is_a_classic_shell():
    """No logic left in src/: each script there is listed, and its main and parse_arguments are the
    tool module's, so flags, defaults and outputs are the tool's."""
    scripts = {os.path.relpath(p, SRC) for p in glob.glob(os.path.join(SRC, '*.py')) +
               glob.glob(os.path.join(SRC, 'align', '*.py'))}
    assert scripts - {'facenet.py', 'lfw.py', 'align/__init__.py', 'align/detect_face.py'} == set(CLASSIC)
    for script, module in CLASSIC.items():
        tool = __import__(module, fromlist=['main'])
        shell = runpy.run_path(os.path.join(SRC, script), run_name='classic_shell')
        assert shell['main'] is tool.main and shell['parse_arguments'] is tool.parse_arguments, script
        with open(os.path.join(SRC, script)) as f:
            assert len(f.read().splitlines()) <= 15, '%s holds more than a shell' % script


def test_commands_follow_one_scheme():
    """`facenet-<tool>` is facenet_tf.<tool> (dashes as underscores): its console_main, and
    `python -m facenet_tf.<tool>` runs the same tool; every classic script has its command."""
    modules = set()
    for command, target in COMMANDS.items():
        module, _, function = target.partition(':')
        assert function == 'console_main'
        short = command[len('facenet-'):].replace('-', '_')
        assert module in ('facenet_tf.' + short, 'facenet_tf.%s.align_dataset_mtcnn' % short), command
        tool = __import__(module, fromlist=['console_main'])
        assert callable(tool.console_main) and callable(tool.parse_arguments)
        modules.add(module)
    assert modules == set(CLASSIC.values())
    assert os.path.isfile(os.path.join(SRC, 'facenet_tf', 'align', '__main__.py'))


def test_classic_imports_and_model_def_resolve_to_the_package():
    import facenet
    import lfw
    import align.detect_face
    import models.inception_resnet_v1
    from facenet_tf import images, model_io, pairs
    from facenet_tf.align import detect_face
    from facenet_tf.models import inception_resnet_v1
    from facenet_tf.training.flags import import_network
    assert facenet.prewhiten is images.prewhiten and facenet.load_model is model_io.load_model
    assert lfw.read_pairs is pairs.read_pairs
    assert align.detect_face.create_mtcnn is detect_face.create_mtcnn
    assert models.inception_resnet_v1.inference is inception_resnet_v1.inference
    assert import_network('models.inception_resnet_v1') is inception_resnet_v1


def test_a_classic_command_line_runs_unchanged(tmp_path):
    """From the root, as the classic tools were run: the usage names the script, and a bad input is
    one line under the script's name."""
    out = subprocess.run([sys.executable, 'src/align/align_dataset_mtcnn.py', '--help'], cwd=ROOT,
                         capture_output=True, text=True, env=_env(), timeout=120)
    assert out.returncode == 0 and out.stdout.startswith('usage: align_dataset_mtcnn.py ')
    assert '--detect_multiple_faces' in out.stdout and '--margin' in out.stdout
    out = subprocess.run([sys.executable, 'src/freeze_graph.py', str(tmp_path / 'none'), str(tmp_path / 'x.pb')],
                         cwd=ROOT, capture_output=True, text=True, env=_env(), timeout=120)
    assert out.returncode == 2 and out.stderr.startswith('freeze_graph.py: error: ')
    assert len(out.stderr.splitlines()) == 1 and not (tmp_path / 'x.pb').exists()


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """The wheel built from this tree, installed into a fresh venv that sees this interpreter's
    packages (TensorFlow etc.) but not src/."""
    base = tmp_path_factory.mktemp('installed')
    tree = base / 'tree'  # the build writes build/ and *.egg-info beside its sources: not into the clone
    shutil.copytree(os.path.join(SRC, 'facenet_tf'), tree / 'src' / 'facenet_tf',
                    ignore=shutil.ignore_patterns('__pycache__'))
    for name in ('pyproject.toml', 'README.md'):
        shutil.copy(os.path.join(ROOT, name), tree / name)
    wheels = base / 'wheels'
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps', '--no-build-isolation',
                    '-w', str(wheels), str(tree)], check=True, cwd=str(base), env=_env(), timeout=300,
                   capture_output=True)
    wheel, = glob.glob(str(wheels / '*.whl'))
    venv = base / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages', str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / 'bin' / 'python'), '-m', 'pip', 'install', '--quiet', '--no-deps', '--no-index',
                    wheel], check=True, env=_env(), timeout=300, capture_output=True)
    work = base / 'elsewhere'
    work.mkdir()
    return wheel, venv, work


def test_the_wheel_holds_only_facenet_tf(installed):
    wheel, _, _ = installed
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        tops = {n.split('/')[0] for n in names}
        entry_points = z.read(next(n for n in names if n.endswith('.dist-info/entry_points.txt'))).decode()
    assert {t for t in tops if not t.endswith('.dist-info')} == {'facenet_tf'}
    assert 'facenet_tf/models/inception_resnet_v1.py' in names and 'facenet_tf/align/detect_face.py' in names
    for command, target in COMMANDS.items():
        assert '%s = %s' % (command, target) in entry_points


def test_installed_commands_run_from_any_folder(installed, tmp_path):
    _, venv, work = installed
    python = str(venv / 'bin' / 'python')
    where = subprocess.run([python, '-c', 'import facenet_tf, os; print(os.path.dirname(facenet_tf.__file__))'],
                           cwd=str(work), capture_output=True, text=True, env=_env(), timeout=120)
    assert where.stdout.strip().startswith(str(venv)), where
    out = subprocess.run([str(venv / 'bin' / 'facenet-freeze'), str(tmp_path / 'none'), str(tmp_path / 'x.pb')],
                         cwd=str(work), capture_output=True, text=True, env=_env(), timeout=120)
    assert out.returncode == 2 and out.stderr.startswith('facenet-freeze: error: '), out.stderr
    assert len(out.stderr.splitlines()) == 1
    out = subprocess.run([python, '-m', 'facenet_tf.align', '--help'], cwd=str(work), capture_output=True,
                         text=True, env=_env(), timeout=120)
    assert out.returncode == 0 and '--detect_multiple_faces' in out.stdout, out.stderr
    # the classic generic names stay out of site-packages
    site = glob.glob(str(venv / 'lib' / 'python*' / 'site-packages'))[0]
    for generic in ('align', 'models', 'lfw.py', 'facenet.py', 'src'):
        assert not os.path.exists(os.path.join(site, generic)), generic
