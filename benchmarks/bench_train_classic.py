"""Triplet training like for like with the classic tool: the classic train_tripletloss.py and ours run
alternately (--rounds times each) with the same command on the same aligned crops; per tool the
wall and process CPU time, the selection forward pass, the training steps and the time per trained
image, and the ratio ours/classic.

Usage: python benchmarks/bench_train_classic.py [--rounds 2] [--epoch_size 5] [--max_nrof_epochs 1] [--images_per_class 3]
           [--ours_args "--precision bf16"] [--classic ~/classic] [--aligned /work/data/lfw_mtcnnpy_160]
           [--cache /tmp/facenet_bench_train] [--only ours|classic] [--keep]

The training set: every LFW person with at least --images_per_class aligned 160 px crops, that many
crops each (links in the cache folder; the crops of --aligned, else LFW aligned once by our aligner
into the cache). A round samples 45 people x up to 40 images (1,800 images embedded), selects
triplets among the first 45 people (at most 45 x 3 = 135 with 3 images each) and trains on them:
the classic tool trains every selected triplet of a round, ours stops at --epoch_size steps, so
with --epoch_size a multiple of 5 (135 triplets = 5 batches of 90) both train whole rounds. The
classic tool runs --max_nrof_epochs + 1 epochs; ours gets --max_nrof_epochs + 1 so that both train
the same epochs, steps and images (the epoch-end work, checkpoint and histograms, included).

Figures per tool (medians over the rounds): wall and CPU seconds (the child's user + system time);
start-up (until the first forward pass begins: imports, graph, session); the selection forward pass
(seconds, images/s); training steps (seconds, images/s); time per trained image of the whole tool
minus start-up, of the steps only and of the steps after the first (whose executor and kernels are
prepared in it). The steady state: wall and CPU seconds of a full-batch step that is
neither the first of a selection round nor the epoch's last (ours writes the histograms there), from
the times between consecutive step lines (the child's CPU time is read from /proc at each line, so
a step's CPU seconds show how many cores it got on a loaded machine); the first and the last step
of ours are printed apart.
"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from _paths import ROOT, SHARED
from _machine import cpu_line

FORWARD_RE = re.compile(r'Running forward pass on sampled images: ([\d.]+)')
CLASSIC_SELECTED_RE = re.compile(r'\(nrof_random_negs, nrof_triplets\) = \((\d+), (\d+)\): time=([\d.]+) seconds')
CLASSIC_STEP_RE = re.compile(r'^Epoch: \[\d+\]\[\d+/\d+\]\tTime ([\d.]+)')
OURS_SELECTED_RE = re.compile(r'^Selected (\d+) triplets from (\d+) anchor-positive pairs \(\w+, ([\d.]+) s\)')
STEP_RE = re.compile(r'^Epoch: \[\d+\]\[(\d+)/\d+\]')       # a step line of either tool
OURS_EPOCH_RE = re.compile(r'^Epoch \d+: (\d+) steps, (\d+) images in [\d.]+ s .*?, ([\d.]+) s in training steps'
                           r' \(([\d.]+) s the first\)')


def training_set(args):
    """The folder of --images_per_class crops per person (links), made once in the cache."""
    k = args.images_per_class
    target = os.path.join(args.cache, 'lfw160_%d_each' % k)
    if os.path.isdir(target):
        return target
    aligned = args.aligned if os.path.isdir(args.aligned) else align_once(args)
    building = target + '.%d.tmp' % os.getpid()
    os.makedirs(building)
    for person in sorted(os.listdir(aligned)):
        folder = os.path.join(aligned, person)
        if not os.path.isdir(folder):
            continue
        crops = sorted(f for f in os.listdir(folder) if f.lower().endswith(('.png', '.jpg')))
        if len(crops) < k:
            continue
        os.makedirs(os.path.join(building, person))
        for name in crops[:k]:
            os.symlink(os.path.join(folder, name), os.path.join(building, person, name))
    os.rename(building, target)
    return target


def align_once(args):
    """LFW people with 3+ images aligned at 160 px (margin 32) by our aligner into the cache."""
    out = os.path.join(args.cache, 'lfw_aligned_160')
    if os.path.isdir(out):
        return out
    lfw = os.path.join(SHARED, 'data', 'lfw_deepfunneled')
    subset = os.path.join(args.cache, 'lfw_subset')
    os.makedirs(subset, exist_ok=True)
    for person in sorted(os.listdir(lfw)):
        images = sorted(os.listdir(os.path.join(lfw, person)))
        if len(images) >= args.images_per_class and not os.path.exists(os.path.join(subset, person)):
            os.symlink(os.path.join(lfw, person), os.path.join(subset, person))
    print('aligning %s once into %s' % (subset, out), file=sys.stderr)
    subprocess.run([sys.executable, os.path.join(ROOT, 'src', 'align', 'align_dataset_mtcnn.py'), subset,
                    out + '.tmp', '--image_size', '160', '--margin', '32'], check=True)
    os.rename(out + '.tmp', out)
    return out


def command(args, data_dir, work, tool):
    """The flags both tools get; ours one epoch more, to train the epochs the classic tool trains."""
    epochs = args.max_nrof_epochs + (1 if tool == 'ours' else 0)
    return ['--data_dir', data_dir, '--model_def', 'models.inception_resnet_v1', '--image_size', '160',
            '--batch_size', '90', '--people_per_batch', '45', '--images_per_person', '40', '--optimizer', 'ADAGRAD',
            '--learning_rate', '0.01', '--epoch_size', str(args.epoch_size), '--max_nrof_epochs', str(epochs),
            '--embedding_size', '128', '--keep_probability', '0.8', '--weight_decay', '1e-4', '--random_flip',
            '--logs_base_dir', os.path.join(work, 'logs'), '--models_base_dir', os.path.join(work, 'models')]


def cpu_seconds(pid):
    """User + system CPU seconds of a running process (all its threads), from /proc."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except OSError:
        return float('nan')
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def run_tool(argv, env, work, log_path):
    """Run one training; returns (wall s, CPU s, [(seconds since start, CPU s so far, line)])."""
    lines = []
    with open(log_path + '.err', 'w') as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, cwd=work, env=env, text=True)
        for line in proc.stdout:
            lines.append((time.perf_counter() - start, cpu_seconds(proc.pid), line.rstrip('\n')))
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    with open(log_path, 'w') as f:
        f.writelines('%9.3f %9.2f %s\n' % entry for entry in lines)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit('%s failed (exit %d), see %s and %s.err'
                         % (argv[1], os.waitstatus_to_exitcode(status), log_path, log_path))
    return wall, usage.ru_utime + usage.ru_stime, lines


def parse(tool, lines):
    """{forward: [s], embedded, trained: images, steps: s, startup: s} from a tool's log lines."""
    forward, triplets, steps, trained, startup, first = [], [], 0.0, 0, None, None
    for at, _, line in lines:
        found = FORWARD_RE.search(line)
        if found:
            forward.append(float(found.group(1)))
            if startup is None:
                startup = at - forward[-1]
        if tool == 'classic':
            found = CLASSIC_SELECTED_RE.search(line)
            if found:
                triplets.append(int(found.group(2)))
            found = CLASSIC_STEP_RE.search(line)
            if found:
                steps += float(found.group(1))
                first = float(found.group(1)) if first is None else first
        else:
            found = OURS_SELECTED_RE.search(line)
            if found:
                triplets.append(int(found.group(1)))
            found = OURS_EPOCH_RE.search(line)
            if found:
                trained += int(found.group(2))
                steps += float(found.group(3))
                first = float(found.group(4)) if first is None else first
    if tool == 'classic':
        trained = 3 * sum(triplets)     # the classic tool trains every triplet it selects
    if startup is None or not trained:
        raise SystemExit('%s: no forward pass or no trained image in its log' % tool)
    first_images = min(90, 3 * triplets[0])
    figures = dict(forward=sum(forward), rounds=len(forward), embedded=1800 * len(forward), trained=trained,
                   steps=steps, startup=startup, triplets=triplets, first=first,
                   steady=1000 * (steps - first) / max(trained - first_images, 1))
    figures.update(step_times(lines))
    return figures


def step_times(lines):
    """Steady-state steps from the times between consecutive step lines (no other line between them;
    a line may stand for several steps: ours prints at most one every 5 s), leaving out every
    round's last step (a partial batch; ours writes the histograms on the epoch's last): {step_wall,
    step_cpu: median seconds per step, last_wall, last_cpu: the log's last step, when its line stands
    for it alone, timed from the line before it (after a selection: with the enqueue)}."""
    events = []
    for at, cpu, line in lines:
        found = STEP_RE.search(line)
        selection = OURS_SELECTED_RE.search(line) or CLASSIC_SELECTED_RE.search(line)
        events.append((at, cpu, int(found.group(1)) if found else None, selection is not None))
    round_ends, selected, previous = set(), False, None
    for _, _, b, selection in events:
        selected = selected or selection
        if b is not None:
            if selected and previous is not None:
                round_ends.add(b - 1)       # a round's first step line follows its selection
            selected, previous = False, b
    if previous is not None:
        round_ends.add(previous)
    nan = float('nan')
    walls, cpus, last = [], [], (nan, nan)
    for (at0, cpu0, b0, _), (at1, cpu1, b1, _) in zip(events, events[1:]):
        if b0 is not None and b1 is not None and b1 > b0 and not any(b0 < end <= b1 for end in round_ends):
            walls.append((at1 - at0) / (b1 - b0))
            cpus.append((cpu1 - cpu0) / (b1 - b0))
    steps = [i for i, event in enumerate(events) if event[2] is not None]
    if len(steps) >= 2 and (events[steps[-1] - 1][2] is None or events[steps[-1]][2] - events[steps[-2]][2] == 1):
        (at0, cpu0, _, _), (at1, cpu1, _, _) = events[steps[-1] - 1], events[steps[-1]]
        last = (at1 - at0, cpu1 - cpu0)
    return dict(step_wall=float(np.median(walls)) if walls else nan, step_cpu=float(np.median(cpus)) if cpus else nan,
                last_wall=last[0], last_cpu=last[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--epoch_size', type=int, default=5)
    parser.add_argument('--images_per_class', type=int, default=3)
    parser.add_argument('--max_nrof_epochs', type=int, default=1,
                        help="The classic tool's flag (it trains one epoch more); ours gets one more to match.")
    parser.add_argument('--ours_args', default='', help='Extra flags for our tool only, e.g. "--precision bf16".')
    parser.add_argument('--classic', default=os.path.expanduser('~/classic'))
    parser.add_argument('--aligned', default=os.path.join(os.path.dirname(ROOT), 'data', 'lfw_mtcnnpy_160'))
    parser.add_argument('--cache', default=os.path.join(tempfile.gettempdir(), 'facenet_bench_train'))
    parser.add_argument('--only', choices=['ours', 'classic'], default=None)
    parser.add_argument('--keep', action='store_true', help='Keep the logs (printed at the end).')
    args = parser.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    data_dir = training_set(args)
    classic_src = os.path.join(args.classic, 'facenet', 'src')
    tools = {'classic': ([os.path.join(args.classic, 'venv', 'bin', 'python'),
                          os.path.join(classic_src, 'train_tripletloss.py')], [], classic_src),
             'ours': ([sys.executable, os.path.join(ROOT, 'src', 'train_tripletloss.py')],
                      shlex.split(args.ours_args), None)}
    order = [args.only] if args.only else ['classic', 'ours']
    results = {tool: [] for tool in order}
    logs = tempfile.mkdtemp(prefix='bench_train_classic_')
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for tool in (order if r % 2 == 0 else order[::-1]):
            script, extra, pythonpath = tools[tool]
            work = tempfile.mkdtemp(prefix=tool + '_', dir=logs)
            env = dict(os.environ, PYTHONUNBUFFERED='1')
            if pythonpath:
                env['PYTHONPATH'] = pythonpath
            log = os.path.join(logs, '%s_%d.log' % (tool, r))
            wall, cpu, lines = run_tool(script + command(args, data_dir, work, tool) + extra, env, work, log)
            shutil.rmtree(work)
            fig = parse(tool, lines)
            fig.update(wall=wall, cpu=cpu)
            results[tool].append(fig)
            load.append(os.getloadavg()[0])
            print('%-7s round %d: wall %.1f s, CPU %.1f s, start-up %.1f s, forward %.1f s, %d images in %.1f s of '
                  'steps (steady %.2f s, %.2f CPU-s a step), triplets %s, load %.1f'
                  % (tool, r, wall, cpu, fig['startup'], fig['forward'], fig['trained'], fig['steps'],
                     fig['step_wall'], fig['step_cpu'], fig['triplets'], load[-1]), flush=True)
    print()
    print(cpu_line())
    print('load average (1 min) during the runs: %.1f-%.1f; training set %s; ours +%r'
          % (min(load), max(load), data_dir, args.ours_args))
    print('%-8s %8s %8s %9s %12s %10s %12s %12s %13s' % ('tool', 'wall s', 'CPU s', 'start s', 'forward i/s',
                                                         'steps i/s', 'ms/img tool', 'ms/img steps', 'steady ms/img'))
    table = {}
    for tool in order:
        figs = results[tool]

        def median(f):
            return float(np.median([f(x) for x in figs]))
        row = dict(wall=median(lambda x: x['wall']), cpu=median(lambda x: x['cpu']),
                   startup=median(lambda x: x['startup']),
                   forward=median(lambda x: x['embedded'] / x['forward']),
                   steps=median(lambda x: x['trained'] / x['steps']),
                   tool=median(lambda x: 1000 * (x['wall'] - x['startup']) / x['trained']),
                   step_ms=median(lambda x: 1000 * x['steps'] / x['trained']), steady=median(lambda x: x['steady']))
        row.update((key, median(lambda x: x[key])) for key in ('first', 'step_wall', 'step_cpu', 'last_wall',
                                                                'last_cpu'))
        table[tool] = row
        print('%-8s %8.1f %8.1f %9.1f %12.1f %10.1f %12.1f %12.1f %13.1f'
              % (tool, row['wall'], row['cpu'], row['startup'], row['forward'], row['steps'], row['tool'],
                 row['step_ms'], row['steady']))
    print('\n%-8s %12s %12s %12s %12s %12s %12s' % ('tool', 'first step s', 'steady s', 'steady CPU s',
                                                   'steady cores', 'last step s', 'last CPU s'))
    for tool, row in table.items():
        print('%-8s %12.1f %12.2f %12.2f %12.2f %12.1f %12.1f'
              % (tool, row['first'], row['step_wall'], row['step_cpu'], row['step_cpu'] / row['step_wall'],
                 row['last_wall'], row['last_cpu']))
    if len(table) == 2:
        c, o = table['classic'], table['ours']
        print('ours/classic: time per trained image %.2fx (whole tool minus start-up), %.2fx (steps only), %.2fx '
              '(steps after the first); forward pass time per image %.2fx; wall %.2fx; CPU %.2fx'
              % (o['tool'] / c['tool'], o['step_ms'] / c['step_ms'], o['steady'] / c['steady'],
                 c['forward'] / o['forward'], o['wall'] / c['wall'], o['cpu'] / c['cpu']))
    if args.keep:
        print('logs kept in %s' % logs)
    else:
        shutil.rmtree(logs)


if __name__ == '__main__':
    main()
