"""data/get_lfw.sh and data/get_orl.sh on archives built at test time from ../shared (no network):
the layout the quick start reads, the published pairs.txt md5, idempotent reruns, one-line errors
and refused archive members."""
import contextlib
import functools
import hashlib
import http.server
import io
import os
import shutil
import subprocess
import tarfile
import threading
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEOPLE = ('Colin_Powell', 'AJ_Cook', 'Serena_Williams')


def run(script, *args, env=None):
    return subprocess.run(['bash', os.path.join(ROOT, 'data', script)] + [str(a) for a in args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=dict(os.environ, **(env or {})))


def md5(path):
    with open(path, 'rb') as f:
        return hashlib.md5(f.read()).hexdigest()


def assert_one_line_error(result, script, text):
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count('\n') == 0, result.stderr
    assert result.stderr.startswith(script + ': error: ') and text in result.stderr, result.stderr


def add_bytes(tar, name, data, kind=tarfile.REGTYPE, linkname=''):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


@pytest.fixture
def lfw_archive(data_dir, tmp_path):
    """A small lfw-deepfunneled.tgz (three people, the published layout) and the real pairs.txt."""
    tgz = tmp_path / 'lfw-deepfunneled.tgz'
    with tarfile.open(tgz, 'w:gz') as tar:
        for person in PEOPLE:
            tar.add(os.path.join(data_dir, 'lfw_deepfunneled', person), 'lfw-deepfunneled/' + person)
    return str(tgz), os.path.join(data_dir, 'lfw_protocol', 'pairs.txt')


def test_lfw_unpacks_into_quick_start_layout_and_reruns(lfw_archive, data_dir, tmp_path):
    tgz, pairs = lfw_archive
    dest = tmp_path / 'datasets' / 'lfw'
    env = {'LFW_TGZ_MD5': md5(tgz)}   # a repacked archive: the real pairs.txt keeps its published md5
    result = run('get_lfw.sh', dest, tgz, pairs, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['wrote %s/pairs.txt' % dest, 'unpacked 3 people', 'wrote %s/raw' % dest]
    assert sorted(os.listdir(dest)) == ['pairs.txt', 'raw']
    assert sorted(os.listdir(dest / 'raw')) == sorted(PEOPLE)
    source = os.path.join(data_dir, 'lfw_deepfunneled', 'Colin_Powell')
    names = sorted(os.listdir(source))
    assert sorted(os.listdir(dest / 'raw' / 'Colin_Powell')) == names
    for name in names[:5]:
        assert md5(os.path.join(source, name)) == md5(dest / 'raw' / 'Colin_Powell' / name)
    assert md5(dest / 'pairs.txt') == '9f1ba174e4e1c508ff7cdf10ac338a7d'
    again = run('get_lfw.sh', dest, tgz, env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == ['%s/pairs.txt is present (md5 ok)' % dest, '%s/raw is present' % dest]


@contextlib.contextmanager
def serving(folder):
    """A local HTTP server of `folder` (the script's download path without a network): its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield 'http://127.0.0.1:%d' % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_lfw_downloads_checks_and_cleans_up(lfw_archive, tmp_path):
    tgz, pairs = lfw_archive
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    shutil.copy(tgz, mirror)
    shutil.copy(pairs, mirror)
    dest = tmp_path / 'lfw'
    with serving(mirror) as url:
        bad = run('get_lfw.sh', dest, env={'LFW_BASE_URL': url})   # the published md5: refused, removed
        assert_one_line_error(bad, 'get_lfw.sh', 'lfw-deepfunneled.tgz.download: md5 mismatch')
        assert sorted(os.listdir(dest)) == ['pairs.txt']
        good = run('get_lfw.sh', dest, env={'LFW_BASE_URL': url, 'LFW_TGZ_MD5': md5(tgz)})
        missing = run('get_lfw.sh', tmp_path / 'other', env={'LFW_BASE_URL': url + '/nothing'})
    assert good.returncode == 0, good.stderr
    assert good.stdout.splitlines() == ['%s/pairs.txt is present (md5 ok)' % dest, 'downloading %s/lfw-deepfunneled.tgz'
                                        % url, 'unpacked 3 people', 'wrote %s/raw' % dest]
    assert sorted(os.listdir(dest)) == ['pairs.txt', 'raw'] and len(os.listdir(dest / 'raw')) == 3
    assert bad.stdout.splitlines()[:2] == ['downloading %s/pairs.txt' % url, 'wrote %s/pairs.txt' % dest]
    assert_one_line_error(missing, 'get_lfw.sh', 'cannot download %s/nothing/pairs.txt (curl: (22)' % url)
    assert os.listdir(tmp_path / 'other') == []


def test_lfw_refuses_an_archive_with_another_md5(lfw_archive, tmp_path):
    tgz, pairs = lfw_archive
    dest = tmp_path / 'lfw'
    result = run('get_lfw.sh', dest, tgz, pairs)
    assert_one_line_error(result, 'get_lfw.sh', 'md5 mismatch (got %s, expected 68331da3eb755a505a502b5aacb3c201)'
                          % md5(tgz))
    assert sorted(os.listdir(dest)) == ['pairs.txt']


@pytest.mark.parametrize('name,kind,linkname,message', [
    ('../evil.jpg', tarfile.REGTYPE, '', "member '../evil.jpg' is outside lfw-deepfunneled/"),
    ('lfw-deepfunneled/../../evil.jpg', tarfile.REGTYPE, '', 'is outside lfw-deepfunneled/'),
    ('/tmp/evil.jpg', tarfile.REGTYPE, '', "member '/tmp/evil.jpg' is outside"),
    ('lfw-deepfunneled/A/link', tarfile.SYMTYPE, '/etc', 'is not a plain file or folder'),
    ('lfw-deepfunneled/A/hard', tarfile.LNKTYPE, '../evil.jpg', 'is not a plain file or folder'),
])
def test_lfw_refuses_members_escaping_dest(tmp_path, name, kind, linkname, message):
    tgz = tmp_path / 'lfw-deepfunneled.tgz'
    with tarfile.open(tgz, 'w:gz') as tar:
        add_bytes(tar, 'lfw-deepfunneled/A/A_0001.jpg', b'jpeg')
        add_bytes(tar, name, b'evil', kind, linkname)
    dest = tmp_path / 'out' / 'lfw'
    dest.mkdir(parents=True)
    (dest / 'pairs.txt').write_bytes(b'')
    result = run('get_lfw.sh', dest, tgz, env={'LFW_TGZ_MD5': md5(tgz), 'LFW_PAIRS_MD5': md5(dest / 'pairs.txt')})
    assert_one_line_error(result, 'get_lfw.sh', message)
    assert sorted(os.listdir(dest)) == ['pairs.txt']   # no raw/, no temporary folder left
    assert sorted(os.listdir(tmp_path / 'out')) == ['lfw']
    assert not (tmp_path / 'out' / 'evil.jpg').exists() and not (tmp_path / 'evil.jpg').exists()


def test_lfw_usage_and_missing_file_errors(tmp_path):
    assert_one_line_error(run('get_lfw.sh'), 'get_lfw.sh', 'usage: bash data/get_lfw.sh DEST')
    assert_one_line_error(run('get_lfw.sh', tmp_path / 'lfw', tmp_path / 'nothing.tgz'), 'get_lfw.sh',
                          'nothing.tgz: no such file')
    other = tmp_path / 'notes.zip'
    other.write_bytes(b'x')
    assert_one_line_error(run('get_lfw.sh', tmp_path / 'lfw', other), 'get_lfw.sh', 'not an LFW archive')


def orl_zip(data_dir, path, extra=()):
    """att_faces.zip as published (att_faces/s<N>/<M>.pgm + README), here with the shared PNG copies."""
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('att_faces/README', 'The ORL face database\n')
        for person in ('s1', 's2', 's3'):
            for name in sorted(os.listdir(os.path.join(data_dir, 'orl_faces', person))):
                z.write(os.path.join(data_dir, 'orl_faces', person, name), 'att_faces/%s/%s' % (person, name))
        for info, data in extra:
            z.writestr(info, data)
    return str(path)


def test_orl_unpacks_person_folders_and_reruns(data_dir, tmp_path):
    archive = orl_zip(data_dir, tmp_path / 'att_faces.zip')
    dest = tmp_path / 'datasets' / 'orl'
    result = run('get_orl.sh', dest, archive, env={'ORL_ZIP_MD5': md5(archive)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['unpacked 3 people', 'wrote %s' % dest]
    assert sorted(os.listdir(dest)) == ['s1', 's2', 's3']
    assert sorted(os.listdir(dest / 's2')) == sorted(os.listdir(os.path.join(data_dir, 'orl_faces', 's2')))
    assert md5(dest / 's2' / '7.png') == md5(os.path.join(data_dir, 'orl_faces', 's2', '7.png'))
    assert sorted(os.listdir(tmp_path / 'datasets')) == ['orl']
    again = run('get_orl.sh', dest, archive)
    assert (again.returncode, again.stdout) == (0, '%s is present\n' % dest)
    assert_one_line_error(run('get_orl.sh', tmp_path / 'other', archive, env={'ORL_ZIP_MD5': '0' * 32}),
                          'get_orl.sh', 'md5 mismatch')
    assert sorted(os.listdir(tmp_path)) == ['att_faces.zip', 'datasets']


def test_orl_refuses_links_and_escaping_names(data_dir, tmp_path):
    link = zipfile.ZipInfo('att_faces/s4/1.pgm')
    link.external_attr = 0o120777 << 16
    for extra, message in ((('../s9/1.pgm', b'evil'),), "member '../s9/1.pgm' escapes"), \
                          (((link, '/etc/passwd'),), "member 'att_faces/s4/1.pgm' is a link"):
        archive = orl_zip(data_dir, tmp_path / 'att_faces.zip', extra)
        result = run('get_orl.sh', tmp_path / 'out' / 'orl', archive)
        assert_one_line_error(result, 'get_orl.sh', message)
        assert os.listdir(tmp_path / 'out') == []
