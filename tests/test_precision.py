"""The --precision bf16 warning: when it is given (explicit CPU flag sets) and that it is printed once."""
import io

import pytest

from facenet_tf import precision, tf_setup

EMULATED = 'bf16 is emulated on this CPU (no avx512_bf16/amx_bf16) and slower than fp32'


@pytest.mark.parametrize('flags', [{'avx2'}, {'avx2', 'fma'}, {'avx512f', 'avx512bw', 'avx512vl'}, set()])
def test_bf16_is_emulated_without_avx512_bf16_or_amx(flags):
    assert precision.bf16_warning(flags, onednn=True) == EMULATED


@pytest.mark.parametrize('flags', [{'avx512f', 'avx512_bf16'}, {'amx_bf16'}, {'avx2', 'amx_bf16', 'amx_tile'}])
def test_no_warning_with_native_bf16(flags):
    assert precision.bf16_warning(flags, onednn=True) is None


def test_onednn_off_is_reported_whatever_the_cpu():
    for flags in ({'avx2'}, {'avx512f', 'avx512_bf16'}):
        assert 'oneDNN is off' in precision.bf16_warning(flags, onednn=False)


def test_unknown_cpu_flags_give_no_warning(monkeypatch):
    monkeypatch.setattr(precision, '_cpu_flags', lambda: None)
    assert precision.bf16_warning(onednn=True) is None
    monkeypatch.setattr(precision, '_cpu_flags', lambda: {'avx2'})
    assert precision.bf16_warning(onednn=True) == EMULATED


def test_session_config_warns_once_per_process(monkeypatch, capsys):
    monkeypatch.setattr(precision, '_warned', False)
    monkeypatch.setattr(precision, '_cpu_flags', lambda: {'avx2'})
    monkeypatch.setattr(precision, '_onednn_enabled', lambda: True)
    tf_setup.session_config('fp32')
    assert capsys.readouterr().err == ''
    for _ in range(3):
        tf_setup.session_config('bf16')
    assert capsys.readouterr().err == 'warning: %s\n' % EMULATED
    assert not precision.warn_precision('bf16')  # already said


def test_no_warning_on_a_native_bf16_cpu(monkeypatch):
    monkeypatch.setattr(precision, '_warned', False)
    monkeypatch.setattr(precision, '_cpu_flags', lambda: {'avx512f', 'avx512_bf16', 'amx_bf16'})
    monkeypatch.setattr(precision, '_onednn_enabled', lambda: True)
    stream = io.StringIO()
    assert not precision.warn_precision('bf16', stream)
    assert stream.getvalue() == ''
