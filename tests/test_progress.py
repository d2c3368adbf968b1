"""facenet_tf.progress: a live tqdm bar on a terminal, a few spaced lines in a log, the closing line."""
import io
import re

from facenet_tf.progress import Progress
from facenet_tf import training


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal, as sys.stderr does in an interactive shell."""

    def isatty(self):
        return True


LINE = re.compile(r'^align: (\d+)/13000 \((\d+\.\d)%\) \d+\.\d img/s ETA (\d+:)?\d+:\d\d$')


def _run(stream, total=13000, n=1, **kw):
    progress = Progress(total, 'align', 'img', stream=stream, **kw)
    for _ in range(0, total, n):
        progress.update(n)
    stream.write(progress.summary() + '\n')
    return progress


def test_log_gets_a_line_every_tenth_and_the_summary():
    """13,000 items in a fast run: the first item, each 10% and the summary, 12 lines in all."""
    stream = io.StringIO()
    progress = _run(stream)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 12
    done = [int(LINE.match(line).group(1)) for line in lines[:-1]]
    assert done == [1] + [1300 * k for k in range(1, 11)]
    assert lines[-2].startswith('align: 13000/13000 (100.0%) ') and lines[-2].endswith('ETA 0:00')
    assert re.match(r'^align: 13000 img in \d+:\d\d \(\d+\.\d img/s\)$', lines[-1])
    assert progress.live is False


def test_log_gets_a_line_after_the_interval_even_without_another_tenth(monkeypatch):
    """A slow run: a line each time `interval` seconds have passed, though no new 10% is done."""
    clock = [1000.0]
    monkeypatch.setattr('facenet_tf.progress.time.time', lambda: clock[0])
    stream = io.StringIO()
    progress = Progress(13000, 'align', 'img', stream=stream)
    for _ in range(5):
        progress.update(10)
        clock[0] += 31.0
    progress.update(10)
    lines = stream.getvalue().splitlines()
    assert [int(LINE.match(line).group(1)) for line in lines] == [10, 20, 30, 40, 50, 60]
    assert lines[-1] == 'align: 60/13000 (0.5%) 0.4 img/s ETA 9:17:08'   # 60 in 155 s


def test_terminal_gets_one_live_bar_then_the_summary():
    """On a terminal: one bar redrawn in place (carriage returns, no new lines) with label,
    done/total, rate and ETA, then the closing line on its own line."""
    stream = FakeTerminal()
    progress = _run(stream, n=100)
    text = stream.getvalue()
    lines = text.split('\n')
    assert lines[-1] == ''
    assert len(lines) == 3                     # the bar's final state, the summary, ''
    final = lines[0].split('\r')[-1]
    assert final.startswith('align: 100%') and '13000/13000' in final
    assert re.search(r'\[\d\d:\d\d<00:00, +[\d.]+k?img/s\]', final)
    assert re.match(r'^align: 13000 img in \d+:\d\d \(\d+\.\d img/s\)$', lines[1])
    assert progress.live is True and 'ETA' not in text


def test_summary_closes_an_unfinished_bar():
    """A run that stops early (errors, a kill of the input) still ends the bar before the summary."""
    stream = FakeTerminal()
    progress = Progress(13000, 'export', 'img', stream=stream)
    progress.update(500)
    stream.write(progress.summary() + '\n')
    lines = stream.getvalue().split('\n')
    assert len(lines) == 3 and '500/13000' in lines[0].split('\r')[-1]
    assert lines[1].startswith('export: 500 img in ')
    progress.update(1)                         # an update after the close writes nothing
    assert stream.getvalue().count('\n') == 2


def test_epoch_progress_keeps_its_lines_on_a_terminal():
    """Training epochs keep the classic line format (loss, lr) on a terminal too: no bar."""
    stream = FakeTerminal()
    progress = training.EpochProgress(3, 4, interval=1e9, stream=stream)
    for batch in range(4):
        progress.update(10 + batch, 12, 1.5 + batch, 0.01)
    lines = stream.getvalue().splitlines()
    assert [line.split('\t')[0] for line in lines] == ['Epoch: [3][1/4]', 'Epoch: [3][4/4]']


def test_notes_keep_the_bar_whole():
    """A note during the run: above the live bar on a terminal (the bar is redrawn after it), a line
    of its own in a log."""
    stream = FakeTerminal()
    progress = Progress(100, 'align', 'img', stream=stream)
    progress.update(40)
    progress.write('no face: /data/x.jpg')
    progress.update(60)
    text = stream.getvalue()
    lines = [line.split('\r')[-1] for line in text.split('\n')]
    assert lines == ['no face: /data/x.jpg', lines[1], ''] and lines[1].startswith('align: 100%')
    log = io.StringIO()
    progress = Progress(100, 'align', 'img', stream=log)
    progress.update(40)
    progress.write('no face: /data/x.jpg')
    assert log.getvalue().splitlines()[1] == 'no face: /data/x.jpg'
