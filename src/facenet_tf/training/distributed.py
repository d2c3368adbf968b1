"""Training on several machines with TensorFlow's parameter-server runtime (between-graph replication).

A cluster is described by the standard TF_CONFIG environment variable, which any launcher (Slurm,
Kubernetes, a shell script) sets per process:

    {"cluster": {"ps": ["host0:2222"], "chief": ["host1:2222"], "worker": ["host2:2222"]},
     "task": {"type": "worker", "index": 0}}

`chief` is optional (without it, worker 0 is the chief). Every task runs the same training command
with the same --run_name. A `ps` task starts its tf.compat.v1.train.Server and serves the variables
until it is killed. Each worker (the chief included) builds the whole graph under
tf.compat.v1.train.replica_device_setter (variables on the ps tasks, round robin; everything else,
the input pipeline too, on the worker) and trains on its own stream of batches:
- `--replica_updates sync` (default): tf.compat.v1.train.SyncReplicasOptimizer averages one gradient
  of each worker per update (replicas_to_aggregate = the number of workers; stale gradients dropped);
- `--replica_updates async`: each worker applies its gradients as it computes them.
Before starting its server, a worker waits until the parameter servers accept connections, saying
which it waits for, and gives up after --cluster_wait_timeout seconds (a worker waits as long for
the chief to initialise the variables). The chief initialises the variables (or, continuing a run
with --resume, restores its training state), writes the
checkpoints, summaries and the LFW check; the other workers wait until the variables are ready
(tf.compat.v1.train.SessionManager), so a worker that is restarted rejoins with the current values
held by the parameter servers. The checkpoints hold the one-device variables (the optimizer's
accumulators and tokens live in the ps tasks' memory only).

Each worker runs the script's epochs on its own batches, and the cluster's training ends when the
global step (the number of updates) reaches max_nrof_epochs * epoch_size: each worker checks it
before each step, so with synchronous updates the workers stop together. Should a worker still wait
for an update its peers, having finished, will never complete, a step that waits longer than
--replica_step_timeout seconds ends its training too.
"""
import contextlib
import json
import os
import socket
import time
from typing import Any, NamedTuple

from facenet_tf.errors import FaceNetError
from facenet_tf.tf_setup import configure
from facenet_tf.training.checkpoints import restore_state

tf = configure()  # TensorFlow set up for TF1 graphs (see facenet_tf.tf_setup)
tf1 = tf.compat.v1

WORKER_JOBS = ('chief', 'worker')


class Cluster(NamedTuple):
    spec: Any                   # tf.compat.v1.train.ClusterSpec
    task_type: str              # 'ps', 'chief' or 'worker'
    task_index: int
    is_chief: bool
    nrof_workers: int           # chief + workers: the replicas that train

    @property
    def device(self):
        return '/job:%s/task:%d' % (self.task_type, self.task_index)


TF_CONFIG_LIMIT = 1 << 20     # characters: a cluster description of thousands of tasks fits
TASK_TYPES = WORKER_JOBS + ('ps',)


def _config_error(what):
    return FaceNetError('TF_CONFIG is not a cluster and task description: %s (expected {"cluster": {"ps": '
                        '["host:port", ...], "chief": [...], "worker": [...]}, "task": {"type": "worker", "index": 0}})'
                        % what)


def _address(job, index, address):
    """A task address `host:port` (port 1-65535), or a FaceNetError naming the task."""
    host, sep, port = address.rpartition(':') if isinstance(address, str) else ('', '', '')
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536 and host.isprintable()
            and not any(c.isspace() for c in host)):
        raise _config_error('cluster.%s[%d] is %s, not a host:port address' % (job, index, json.dumps(address)[:60]))
    return address


def _cluster_table(cluster):
    """{job: [address, ...]} of TF_CONFIG's cluster, every value checked."""
    if not isinstance(cluster, dict):
        raise _config_error('"cluster" is %s, not an object of task lists' % type(cluster).__name__)
    table = {}
    for job, addresses in cluster.items():
        if job not in TASK_TYPES:
            raise _config_error('cluster job %s (use ps, chief or worker)' % json.dumps(job)[:40])
        if not isinstance(addresses, list) or not addresses:
            raise _config_error('cluster.%s is %s, not a list of host:port addresses'
                                % (job, json.dumps(addresses)[:60]))
        table[job] = [_address(job, i, a) for i, a in enumerate(addresses)]
    return table


def _task(task, cluster):
    """(type, index) of TF_CONFIG's task, checked against the cluster."""
    if not isinstance(task, dict):
        raise _config_error('"task" is %s, not an object' % type(task).__name__)
    if 'type' not in task:
        raise _config_error('the task has no "type"')
    task_type, task_index = task['type'], task.get('index', 0)
    if task_type not in TASK_TYPES:
        raise _config_error('task type %s (use ps, chief or worker)' % json.dumps(task_type)[:40])
    if isinstance(task_index, bool) or not isinstance(task_index, int):
        raise _config_error('task index %s is not an integer' % json.dumps(task_index)[:40])
    if task_type not in cluster or not 0 <= task_index < len(cluster[task_type]):
        raise _config_error('task %s:%d is not in the cluster %s' % (task_type, task_index, sorted(cluster)))
    return task_type, task_index


def from_environment(environ=None):
    """The Cluster of TF_CONFIG, or None when it is unset or names no cluster (one process). Every
    part is checked (JSON object, job names, non-empty lists of host:port addresses, the task's type
    and integer index in the cluster, a ps job): anything else is one FaceNetError naming TF_CONFIG."""
    text = (os.environ if environ is None else environ).get('TF_CONFIG', '').strip()
    if not text:
        return None
    if len(text) > TF_CONFIG_LIMIT:
        raise _config_error('longer than %d characters' % TF_CONFIG_LIMIT)
    try:
        config = json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:
        raise _config_error('not valid JSON (%s)' % str(e).splitlines()[0])
    except RecursionError:
        raise _config_error('nested too deeply')
    if not isinstance(config, dict):
        raise _config_error('not a JSON object')
    cluster = _cluster_table(config.get('cluster') or {})
    if not cluster:
        return None
    task_type, task_index = _task(config.get('task'), cluster)
    if 'ps' not in cluster:
        raise _config_error('the cluster needs a ps job (parameter servers)')
    is_chief = task_type == 'chief' or (task_type == 'worker' and task_index == 0 and 'chief' not in cluster)
    nrof_workers = sum(len(cluster.get(job, [])) for job in WORKER_JOBS)
    return Cluster(tf1.train.ClusterSpec(cluster), task_type, task_index, is_chief, nrof_workers)


def _reject_constant(name):
    raise ValueError('%s is not a JSON value' % name)


def wait_for_parameter_servers(cluster, timeout, poll_seconds=1.0, log=print):
    """Before a worker starts its server: wait until every ps task accepts TCP connections, saying
    once which ones are waited for; after `timeout` seconds (0: never) give up with a FaceNetError
    naming the unreachable tasks and the flag."""
    pending = {index: address for index, address in enumerate(cluster.spec.job_tasks('ps'))}
    deadline = time.monotonic() + timeout
    said = False
    while True:
        for index, address in list(pending.items()):
            host, _, port = address.rpartition(':')
            try:
                socket.create_connection((host.strip('[]'), int(port)), timeout=poll_seconds).close()
                del pending[index]
            except OSError:
                pass
        if not pending:
            return
        waited = ', '.join('/job:ps/task:%d at %s' % item for item in sorted(pending.items()))
        if timeout and time.monotonic() >= deadline:
            raise FaceNetError('TF_CONFIG: parameter server %s unreachable after %g s (--cluster_wait_timeout)'
                               % (waited, timeout))
        if not said:
            log('Waiting for parameter server %s (giving up after %s)'
                % (waited, '%g s' % timeout if timeout else 'never'), flush=True)
            said = True
        time.sleep(poll_seconds)


def free_local_ports(count):
    """`count` TCP ports free on localhost now, for a cluster of processes on one machine (tests,
    benchmarks)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(('localhost', 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start_server(cluster, config=None):
    """This task's tf.compat.v1.train.Server."""
    try:
        return tf1.train.Server(cluster.spec, job_name=cluster.task_type, task_index=cluster.task_index,
                                config=config)
    except tf.errors.OpError as e:
        raise FaceNetError('cannot start the server of %s (%s): %s' % (
            cluster.device, cluster.spec.task_address(cluster.task_type, cluster.task_index), e.message))


def serve_parameters(cluster, config=None):
    """A ps task: serve the variables until the process is killed (never returns)."""
    server = start_server(cluster, config)
    print('Parameter server %s serving on %s' % (cluster.device, server.target), flush=True)
    server.join()


def device_scope(cluster):
    """The device function of a worker's graph: variables on the ps tasks, the rest on this worker."""
    if cluster is None:
        return contextlib.nullcontext()
    return tf1.device(tf1.train.replica_device_setter(worker_device=cluster.device, cluster=cluster.spec))


class SyncReplicas(object):
    """An optimizer_wrapper for build_train_op: SyncReplicasOptimizer over all the workers; the
    wrapped optimizer is kept for the session (its init ops and chief queue runner)."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.optimizer = None

    def __call__(self, opt):
        self.optimizer = tf1.train.SyncReplicasOptimizer(opt, replicas_to_aggregate=self.cluster.nrof_workers,
                                                         total_num_replicas=self.cluster.nrof_workers)
        return self.optimizer


def optimizer_wrapper(cluster, replica_updates):
    """SyncReplicas for --replica_updates sync in a cluster, else None (asynchronous or one process)."""
    if cluster is None or replica_updates != 'sync':
        return None
    return SyncReplicas(cluster)


def shared_learning_rate(learning_rate):
    """The learning rate as a variable (a local one: not saved) that every training step sets from
    `learning_rate` (its assign is an UPDATE_OPS op, run before the gradients): with synchronous
    updates the chief's queue runner applies the averaged gradients in a run of its own, which
    cannot feed the learning-rate placeholder."""
    variable = tf1.Variable(0.0, trainable=False, collections=[tf1.GraphKeys.LOCAL_VARIABLES],
                            name='learning_rate_value')
    tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS, tf1.assign(variable, learning_rate))
    return variable


def create_session(cluster, server, graph, state, config, wait_timeout=0.0, wait_seconds=1):
    """A session on this worker's server. The chief initialises the variables, restores the run's
    training state `state` (a prefix, or None for a new run) and, with synchronous updates, starts
    the queue runner that applies the averaged gradients and puts the first tokens; the other workers
    wait until the variables are ready (polling every wait_seconds; after wait_timeout seconds, 0:
    never, a FaceNetError). Returns (session, the queue runner's threads: join them after closing the
    session)."""
    sync = graph.replicas.optimizer if graph.replicas is not None else None
    config = tf1.ConfigProto.FromString(config.SerializeToString())
    config.device_filters.extend(['/job:ps', cluster.device])  # not the other workers: they come and go
    manager = tf1.train.SessionManager(
        local_init_op=tf1.local_variables_initializer(),
        ready_op=tf1.report_uninitialized_variables(tf1.global_variables()),
        ready_for_local_init_op=sync.ready_for_local_init_op if sync is not None else None,
        recovery_wait_secs=wait_seconds)
    threads = []
    if cluster.is_chief:
        def restore(sess):
            if state:
                restore_state(sess, graph.state_saver, state, tf1.global_variables())
        sess = manager.prepare_session(server.target, init_op=tf1.global_variables_initializer(), init_fn=restore,
                                       config=config)
        if sync is not None:
            sess.run(sync.chief_init_op)
            # a coordinator of their own, not joined: the session's close ends their blocked run
            threads = sync.get_chief_queue_runner().create_threads(sess, coord=tf.train.Coordinator(), daemon=True,
                                                                   start=True)
            sess.run(sync.get_init_tokens_op())
    else:
        print('Waiting for the chief %s to initialise the variables' % _chief_address(cluster), flush=True)
        try:
            sess = manager.wait_for_session(server.target, config=config,
                                            max_wait_secs=wait_timeout if wait_timeout else float('inf'))
        except tf.errors.DeadlineExceededError:
            raise FaceNetError('TF_CONFIG: the chief %s did not initialise the variables within %g s '
                               '(--cluster_wait_timeout)' % (_chief_address(cluster), wait_timeout))
        if sync is not None:
            sess.run(sync.local_step_init_op)
    print('%s joined the cluster at global step %d' % (cluster.device, sess.run(graph.global_step)), flush=True)
    return sess, threads


def _chief_address(cluster):
    job = 'chief' if 'chief' in cluster.spec.jobs else 'worker'
    return '/job:%s/task:0 at %s' % (job, cluster.spec.task_address(job, 0))


class ClusterFinished(Exception):
    """The cluster's global step has reached the end of training."""


def check_finished(global_step, last_step):
    """Raise ClusterFinished when global_step >= last_step."""
    if global_step >= last_step:
        raise ClusterFinished('the cluster has done its %d updates' % last_step)


class NoSummaries(object):
    """The summary writer of a worker that is not the chief: writes nothing."""

    def add_summary(self, *args, **kwargs):
        pass

    def add_graph(self, *args, **kwargs):
        pass

    def flush(self):
        pass

    def close(self):
        pass
