"""The cluster peers of the cluster_* scenarios (issue 17): Dask
distributed and RQ, each on this machine only.

A CONFIG (the scripts' third argument) names one:

- ``dask/1`` and ``dask/2``: a ``distributed.LocalCluster`` of 2 worker
  processes (``processes=True``) with 1 or 2 threads each, and its
  ``Client``. It talks to nothing else (TCP on 127.0.0.1); its scratch
  space is a temporary directory removed at the end. ``dask/1+bag`` and
  ``dask/2+bag``: the same cluster, and a map batched by the user
  (``dask.bag``, a few partitions per thread) instead of a task per item.
- ``rq`` and ``rq+simple``: a private redis-server on a Unix socket in a
  temporary directory (``--port 0 --save '' --appendonly no``) and 2 RQ
  workers (``python -m rq.cli worker``): RQ's default ``Worker``, which
  forks a work horse per job, or its ``SimpleWorker``, which runs the job
  in the worker itself. Without redis-server the script prints
  ``skipped: ...`` (the harness skips the peer with a note).

Everything started here is stopped at the end (and it is all in the
script's process group, which the harness kills when the script exits).
"""

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Longest a start-up (redis-server, the RQ workers) may take.
START_BOUND = 20.0


def parse(config):
    """('dask', threads), ('dask+bag', threads) or ('rq', simple)."""
    if config in ("dask/1", "dask/2"):
        return "dask", int(config[-1])
    if config in ("dask/1+bag", "dask/2+bag"):
        return "dask+bag", int(config[5])
    if config in ("rq", "rq+simple"):
        return "rq", config == "rq+simple"
    raise SystemExit(f"unknown cluster config {config!r}")


def skipped(why):
    """Tells the harness this peer cannot run here (a note, not an error)."""
    print(f"skipped: {why}", flush=True)
    sys.exit(0)


@contextlib.contextmanager
def dask_client(threads):
    """A Client of a LocalCluster of 2 worker processes."""
    import dask
    from distributed import Client, LocalCluster

    tmp = tempfile.mkdtemp(prefix="multiproc-bench-dask-")
    try:
        with dask.config.set({"temporary-directory": tmp}):
            cluster = LocalCluster(
                n_workers=2,
                threads_per_worker=threads,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                local_directory=tmp,
                silence_logs=logging.ERROR,
            )
            client = Client(cluster)
            try:
                yield client
            finally:
                client.close()
                cluster.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bounded_poll(what, ready):
    """Polls ready() until it holds (a start-up of another process, not
    synchronisation between ours), at most START_BOUND seconds."""
    t0 = time.monotonic()
    while not ready():
        if time.monotonic() - t0 > START_BOUND:
            raise SystemExit(f"{what} did not start within {START_BOUND} s")
        time.sleep(0.01)


@contextlib.contextmanager
def rq_queue(simple):
    """An RQ Queue on a private redis-server with 2 workers running."""
    if shutil.which("redis-server") is None:
        skipped("redis-server is not installed (apt-get install redis-server)")
    from redis import Redis
    from rq import Queue, Worker

    tmp = tempfile.mkdtemp(prefix="multiproc-bench-rq-")
    sock = os.path.join(tmp, "r.sock")
    procs = []
    try:
        server = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", sock, "--dir", tmp,
             "--save", "", "--appendonly", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        )
        procs.append(server)
        conn = Redis(unix_socket_path=sock)

        def answers():
            try:
                return conn.ping()
            except Exception:  # noqa: BLE001 - not up yet
                return False

        _bounded_poll("redis-server", answers)
        cls = "rq.worker.SimpleWorker" if simple else "rq.worker.Worker"
        env = dict(os.environ, PYTHONPATH=HERE)
        for _ in range(2):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "rq.cli", "worker", "--url", f"unix://{sock}",
                 "-w", cls, "--logging_level", "ERROR"],
                cwd=HERE, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        _bounded_poll("2 RQ workers", lambda: Worker.count(connection=conn) >= 2)
        yield Queue(connection=conn)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def rq_result(job, timeout=30):
    """The return value of an RQ job, waited for (XREAD BLOCK on its
    result stream), at most TIMEOUT seconds."""
    res = job.latest_result(timeout=timeout)
    if res is None:
        raise SystemExit(f"RQ job {job.id} gave no result within {timeout} s")
    if res.type != res.Type.SUCCESSFUL:
        raise SystemExit(f"RQ job {job.id} failed: {res.exc_string}")
    return res.return_value
