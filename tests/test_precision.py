"""--precision: the bf16 warning (explicit CPU flag sets), printed once; what `auto` picks (CPU flag
sets given to the rule, not read from the machine)."""
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


# --- --precision auto ---------------------------------------------------------------------------

@pytest.mark.parametrize('flags, onednn, expected', [
    ({'avx2', 'fma'}, True, 'fp32'),                        # AMD/Intel AVX2: bf16 would be emulated
    ({'avx512f', 'avx512bw', 'avx512_vnni'}, True, 'fp32'),  # AVX-512 without bf16 units
    ({'avx512f', 'avx512_bf16'}, True, 'bf16'),              # AVX512_BF16 (e.g. AMD Zen 4)
    ({'avx2', 'amx_bf16', 'amx_tile'}, True, 'bf16'),       # AMX
    ({'avx512f', 'avx512_bf16'}, False, 'fp32'),             # oneDNN off: the rewrite does nothing
    (set(), True, 'fp32'),                                   # flags unreadable
])
def test_auto_picks_bf16_only_where_the_cpu_computes_it(flags, onednn, expected):
    assert precision.resolve_precision('auto', flags, onednn) == expected
    assert precision.resolve_precision('fp32', flags, onednn) == 'fp32'
    assert precision.resolve_precision('bf16', flags, onednn) == 'bf16'


def test_auto_session_on_an_avx2_cpu_is_fp32_without_a_warning(monkeypatch, capsys):
    from tensorflow.core.protobuf import rewriter_config_pb2
    monkeypatch.setattr(precision, '_warned', False)
    monkeypatch.setattr(precision, '_cpu_flags', lambda: {'avx2'})
    monkeypatch.setattr(precision, '_onednn_enabled', lambda: True)
    config = tf_setup.session_config('auto')
    assert config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 != \
        rewriter_config_pb2.RewriterConfig.ON
    assert capsys.readouterr().err == ''
    monkeypatch.setattr(precision, '_cpu_flags', lambda: {'avx512f', 'avx512_bf16'})
    config = tf_setup.session_config('auto')
    assert config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 == \
        rewriter_config_pb2.RewriterConfig.ON
