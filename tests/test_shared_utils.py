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
    args = parser.parse_args(['--n', '1', '--k', '2', '--q', '100', '--t', '0', '--f', '1'])
    assert (args.n, args.k, args.q, args.t, args.f) == (1, 2, 100, 0.0, 1.0)
    for bad in (['--n', '0'], ['--n', 'x'], ['--k', '1'], ['--q', '101'], ['--t', '-1'], ['--f', '1.5'],
                ['--t', 'nan']):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_validator_messages():
    with pytest.raises(argparse.ArgumentTypeError, match='must be at least 1, got 0'):
        cli.positive_int('0')
    with pytest.raises(argparse.ArgumentTypeError, match="invalid int value: 'a'"):
        cli.non_negative_int('a')


def test_library_error_is_the_cli_error(capsys):
    assert cli.UserError is errors.FaceNetError

    def main(args):
        raise errors.FaceNetError('bad input')
    assert cli.run(main, None, prog='tool') == 2
    assert capsys.readouterr().err == 'tool: error: bad input\n'
