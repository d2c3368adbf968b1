"""The README's quick start runs as pasted: its bash blocks are read from README.md, their paths moved
to a small LFW and ORL subset built from ../shared at test time (~/datasets/...) and to the published
model's fixtures (~/models/..., the fetched .h5), and each command is run (the facenet-* commands
in-process through their console entry). Figures a subset reproduces exactly are compared with the
README: the import lines, the compare matrix (four real LFW photos, to 4 decimals), the classifier
lines; for alignment and validation, the format of each line the README shows."""
import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import tomllib

import pytest

from facenet_tf import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPARE_PHOTOS = ('Colin_Powell/Colin_Powell_0001.jpg', 'Colin_Powell/Colin_Powell_0002.jpg',
                  'George_W_Bush/George_W_Bush_0001.jpg', 'Serena_Williams/Serena_Williams_0001.jpg')
PAIRS_PER_FOLD = 1        # the first same and the first different pair of each View 2 fold
ORL_PEOPLE = ('s1', 's2', 's3')
NUMBER = r'\d+(?:\.\d+)?'


def quick_start_commands():
    """[(command line, [printed lines the README shows])] of the quick start's bash blocks, in order
    (continuation lines joined, trailing comments dropped)."""
    with open(os.path.join(ROOT, 'README.md')) as f:
        text = f.read()
    section = text[text.index('## Quick start'):]
    section = section[:section.index('\n## ', 1)]
    commands = []
    for block in re.findall(r'```bash\n(.*?)```', section, re.S):
        for line in block.replace('\\\n', ' ').splitlines():
            if line.startswith('#'):
                commands[-1][1].append(line[2:])
            elif line.strip():
                commands.append((' '.join(line.split('  #')[0].split()), []))
    return commands


def test_quick_start_is_the_whole_path():
    """Data, model, import, alignment, validation, comparison, classifier: each step's command is there
    and every path a later step reads is one an earlier step writes."""
    names = [shlex.split(line)[0:2] for line, _ in quick_start_commands()]
    assert [n[1] if n[0] == 'bash' else n[0] for n in names] == [
        'data/get_lfw.sh', 'data/get_orl.sh', 'data/get_facenet_keras.sh', 'facenet-import-model',
        'facenet-align', 'facenet-validate', 'facenet-compare', 'facenet-align', 'facenet-classifier',
        'facenet-classifier']
    lines = [line for line, _ in quick_start_commands()]
    assert lines[3].split()[1] == '~/.cache/facenet-tf1compat/facenet_keras.h5'   # where step 2 writes
    assert lines[4].split()[1] == '~/datasets/lfw/raw'                             # where step 1 unpacks
    assert '--lfw_pairs ~/datasets/lfw/pairs.txt' in lines[5]
    assert all(p.startswith('~/datasets/lfw/raw/') for p in lines[6].split()[2:])


def entry_points():
    with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
        return tomllib.load(f)['project']['scripts']


def lfw_subset(data_dir, dest):
    """dest/raw with the photos of the chosen View 2 pairs and of the compare step; the real pairs.txt."""
    with open(os.path.join(data_dir, 'lfw_protocol', 'pairs.txt')) as f:
        lines = f.read().splitlines()
    folds, per_fold = (int(n) for n in lines[0].split())
    photos = set(COMPARE_PHOTOS)
    for fold in range(folds):
        start = 1 + fold * 2 * per_fold
        chosen = lines[start:start + PAIRS_PER_FOLD] + lines[start + per_fold:start + per_fold + PAIRS_PER_FOLD]
        for fields in (line.split() for line in chosen):
            people = [(fields[0], fields[1]), (fields[0], fields[2])] if len(fields) == 3 else \
                [(fields[0], fields[1]), (fields[2], fields[3])]
            photos.update('%s/%s_%04d.jpg' % (name, name, int(n)) for name, n in people)
    for photo in photos:
        os.makedirs(os.path.join(dest, 'raw', os.path.dirname(photo)), exist_ok=True)
        shutil.copy(os.path.join(data_dir, 'lfw_deepfunneled', photo), os.path.join(dest, 'raw', photo))
    shutil.copy(os.path.join(data_dir, 'lfw_protocol', 'pairs.txt'), os.path.join(dest, 'pairs.txt'))
    return len(photos)


def run_command(line, scripts, keras_h5):
    """(exit code, stdout, stderr) of one quick-start command line (paths already moved)."""
    argv = shlex.split(line)
    if argv[0] == 'bash':
        if argv[1] == 'data/get_facenet_keras.sh':
            argv.append(keras_h5)   # its default is the place keras_h5 comes from; never write there
        result = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return result.returncode, result.stdout, result.stderr
    module_name = scripts[argv[0]].split(':')[0]
    module = __import__(module_name, fromlist=['main'])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.command(module.main, module.parse_arguments, argv[1:])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope='module')
def quick_start(data_dir, keras_h5, published_model, tmp_path_factory):
    """Every quick-start command run in order on the subsets: [(line, README lines, code, stdout, stderr)]."""
    base = tmp_path_factory.mktemp('readme')
    lfw, orl = str(base / 'datasets' / 'lfw'), str(base / 'datasets' / 'orl')
    nrof_photos = lfw_subset(data_dir, lfw)
    for person in ORL_PEOPLE:
        shutil.copytree(os.path.join(data_dir, 'orl_faces', person), os.path.join(orl, person))
    folder, pb = published_model
    models = os.path.dirname(folder)
    moves = [('~/.cache/facenet-tf1compat/facenet_keras.h5', keras_h5), ('~/datasets/', str(base / 'datasets') + '/'),
             ('~/models/', models + '/')]
    moves += [(old.replace('~/', os.path.expanduser('~/'), 1), new) for old, new in moves]
    scripts, runs = entry_points(), []
    for line, shown in quick_start_commands():
        for old, new in moves:
            line = line.replace(old, new)
            shown = [s.replace(old, new) for s in shown]
        if line.startswith('facenet-import-model'):   # the published_model fixture ran this very command
            assert shlex.split(line)[1:] == [keras_h5, folder, '--pb', pb, '--model_name', '20170512-110547']
            with open(os.path.join(models, 'import.log')) as f:
                runs.append((line, shown, 0, f.read(), ''))
            continue
        runs.append((line, shown) + run_command(line, scripts, keras_h5))
    return {'runs': runs, 'lfw': lfw, 'orl': orl, 'nrof_photos': nrof_photos, 'datasets': str(base / 'datasets'),
            'base': base, 'published': published_model, 'keras_h5': keras_h5}


def quick_start_python():
    """The quick start's Python block and the result its last line's comment shows."""
    with open(os.path.join(ROOT, 'README.md')) as f:
        text = f.read()
    section = text[text.index('## Quick start'):]
    code = re.search(r'```python\n(.*?)```', section[:section.index('\n## ', 1)], re.S).group(1)
    return code, code.rstrip().splitlines()[-1].split('#')[1].split()[0]


def printed(quick_start, start, nth=0, stderr=False):
    """(README lines, printed lines: stdout, then stderr when asked) of the nth command starting with
    `start`, which must have succeeded."""
    matching = [r for r in quick_start['runs'] if r[0].startswith(start)]
    line, shown, code, out, err = matching[nth]
    assert code == 0, (line, out, err)
    return shown, [s.rstrip() for s in (out + err if stderr else out).splitlines()]


def same_format(shown_line):
    """A regex of a README line with every number free."""
    return re.compile('^' + NUMBER.join(re.escape(p) for p in re.split(NUMBER, shown_line)) + '$')


def test_data_steps_find_their_data_in_place(quick_start):
    _, lfw = printed(quick_start, 'bash data/get_lfw.sh')
    assert lfw == ['%s/pairs.txt is present (md5 ok)' % quick_start['lfw'], '%s/raw is present' % quick_start['lfw']]
    _, orl = printed(quick_start, 'bash data/get_orl.sh')
    assert orl == ['%s is present' % quick_start['orl']]
    _, model = printed(quick_start, 'bash data/get_facenet_keras.sh')
    assert len(model) == 1 and model[0].endswith('facenet_keras.h5 is present (sha256 ok)')


def test_import_prints_the_readme_lines(quick_start):
    shown, out = printed(quick_start, 'facenet-import-model')
    assert out == shown   # 490 weights, 1732 ops, the two files


def test_align_and_validate_print_the_readme_formats(quick_start):
    shown, out = printed(quick_start, 'facenet-align')
    summary = [line for line in out if line.startswith('Total number of images')]
    assert len(summary) == 1 and same_format(shown[0]).match(summary[0]), (shown, out)
    assert summary[0].startswith('Total number of images: %d, successfully aligned: %d'
                                 % (quick_start['nrof_photos'], quick_start['nrof_photos']))
    shown, out = printed(quick_start, 'facenet-validate', stderr=True)   # 'Skipped ...' is on stderr
    for line in shown:
        assert any(same_format(line).match(o) for o in out), (line, out)


def test_compare_prints_the_readme_matrix(quick_start):
    shown, out = printed(quick_start, 'facenet-compare')
    assert out[-len(shown):] == shown


def test_orl_classifier_prints_the_readme_lines(quick_start):
    shown, out = printed(quick_start, 'facenet-classifier TRAIN')
    assert shown[0] == '...' and out[-1] == shown[-1]
    shown, out = printed(quick_start, 'facenet-classifier CLASSIFY', 0)
    assert shown[2] == '...'
    assert [same_format(s).match(o) is not None for s, o in zip(shown[:2], out[:2])] == [True, True], out
    assert out[:2] == ['Number of classes: %d' % len(ORL_PEOPLE), 'Number of images: %d' % (3 * len(ORL_PEOPLE))]
    assert out[-1] == shown[-1]   # Accuracy: 1.000


def test_python_example_prints_what_the_readme_shows(quick_start, monkeypatch):
    """The block as written, with FaceNet.pretrained's cache ($FACENET_TF_HOME) holding the fetched file
    and its import (the published_model fixture), so nothing is fetched or written outside tmp."""
    code, result = quick_start_python()
    home = quick_start['base'] / 'cache'
    (home / 'models').mkdir(parents=True)
    os.symlink(quick_start['keras_h5'], home / 'facenet_keras.h5')
    os.symlink(quick_start['published'][0], home / 'models' / '20170512-110547')
    monkeypatch.setenv('FACENET_TF_HOME', str(home))
    code = code.replace("'~/datasets/", repr(quick_start['datasets'] + '/')[:-1])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, 'README.md', 'exec'), {})
    assert (result, out.getvalue().splitlines()[-1]) == ('True', 'True')
