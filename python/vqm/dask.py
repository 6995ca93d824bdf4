"""Classify or embed images on a Dask cluster (dask.distributed), into the output folder format
of `vit-run --out` (vqm.jobs; docs/batch-jobs.md), so either resumes the other.

    from dask.distributed import Client
    import vqm.dask
    client = Client("tcp://scheduler:8786")
    summary = vqm.dask.run("/shared/deit_s.vqm", "/shared/photos", "/shared/tags", client=client)
    # or, without Python: python3 -m vqm.dask --scheduler tcp://scheduler:8786 --model ... --out ...

One task per part. Each worker process loads the model once (a per-process cache, the first
task of a job pays for it) and runs one part at a time with one session of as many OpenMP
threads as the worker has threads (`dask worker --nthreads T`): the worker's other task threads
wait, so P processes x T threads use P x T cores and never more. Decoding is spread over the
same T threads. A part is written atomically by the worker that ran it (write_on="workers",
the output folder on a file system every worker and the client see at the same path) or sent
back and written by the client (write_on="client"). Parts already complete are not submitted;
a task whose part another run completed meanwhile skips it. A worker that dies takes only its
in-flight parts with it: the scheduler reruns them on the others.

Dask is optional for the rest of vqm: this module imports without it, and its functions say
what to install when it is missing.
"""

import argparse
import json
import os
import sys
import threading
import time
import zlib

from . import Model, Session, jobs

INSTALL_HINT = (
    "vqm.dask needs Dask's distributed scheduler: apt-get install python3-dask "
    "python3-distributed (Debian 12), or pip install 'dask[distributed]'"
)


def _distributed():
    try:
        import distributed
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return distributed


# Dask's own periodic work, slowed down (ours). A worker's profiler samples its threads every
# 10 ms and every process's event loop ticks every 20 ms and polls memory every 100 ms; each
# wake-up preempts one of the session's OpenMP threads, and a forward on T threads waits at
# every barrier for the preempted one. With these, 1 worker x 2 threads ran the demo model 5-10 %
# faster on 2 cores (docs/performance.md). The clusters vqm.dask starts (local_cluster) use them;
# `dask scheduler` and `dask worker` take them from DASK_* environment variables
# (docs/batch-jobs.md lists them).
CLUSTER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
}


def local_cluster(workers, threads, **kwargs):
    """A LocalCluster of `workers` processes x `threads` threads with CLUSTER_CONFIG. The config is
    set in this process for good, not for a block: the nanny hands it to each worker it starts,
    restarts included."""
    distributed = _distributed()
    import dask

    dask.config.set(CLUSTER_CONFIG)
    kwargs.setdefault("dashboard_address", None)
    return distributed.LocalCluster(n_workers=workers, threads_per_worker=threads,
                                    processes=True, **kwargs)


# The worker process's model and session (one job's at a time) and the lock that makes its
# parts run one after another.
_lock = threading.Lock()
_loaded = {}


def _worker_threads():
    """Threads of the Dask worker running this task (os.cpu_count() outside a worker)."""
    try:
        worker = _distributed().get_worker()
    except (ImportError, ValueError):
        return os.cpu_count() or 1
    state = getattr(worker, "state", None)  # distributed >= 2022.8 keeps it there
    n = state.nthreads if state is not None else worker.nthreads
    return max(1, int(n))


def _session(model_path, batch):
    """This process's (model, session, decode pool) for `model_path`, loaded on first use."""
    key = (model_path, batch)
    if key not in _loaded:
        for model, session, pool in _loaded.values():  # another job's: free it first
            session.close()
            model.close()
            if pool:
                pool.shutdown()
        _loaded.clear()
        import concurrent.futures

        threads = _worker_threads()
        model = Model(model_path)
        session = Session(model, n_threads=threads, max_batch=batch)
        pool = concurrent.futures.ThreadPoolExecutor(threads) if threads > 1 else None
        _loaded[key] = (model, session, pool)
    return _loaded[key]


def _part_task(model_path, root, names, k, first, top, batch, out):
    """One part on a worker. out: the folder to write into, or None to return the bytes."""
    if out is not None and jobs.part_complete(out, k):
        return {"part": k, "skipped": True, "errors": 0}
    with _lock:
        model, session, pool = _session(model_path, batch)
        npy, meta = jobs.encode_part(model, session, jobs.Listing(root, names), k, first, top,
                                     batch, pool)
    errors = len(json.loads(meta)["errors"])
    if out is None:
        return {"part": k, "skipped": False, "errors": errors, "npy": npy, "json": meta}
    jobs.write_part(out, k, npy, meta)
    return {"part": k, "skipped": False, "errors": errors}


def _materialize(images):
    """A folder, a manifest, a sequence of paths, a dask Bag or a dask/pandas Series (or
    one-column DataFrame) of paths -> what vqm.jobs.listing_of takes."""
    if isinstance(images, (str, bytes, os.PathLike, jobs.Listing)):
        return images
    if hasattr(images, "compute"):
        images = images.compute()
    if hasattr(images, "columns"):  # a DataFrame
        if len(images.columns) != 1:
            raise jobs.JobError("a DataFrame of images must have one column (the paths)")
        images = images[images.columns[0]]
    if hasattr(images, "tolist"):
        images = images.tolist()
    return list(images)


def run(model, images, out, client=None, part_size=1024, top=5, batch=8, root="",
        write_on="workers", retries=2, progress=None):
    """Runs the job (model, images) into folder `out` on a Dask cluster; returns a summary dict:
    parts, written, skipped (already complete), errors (images that could not be read).

    model: a .vqm path readable by every worker at that path. images: a folder, a manifest file,
    a list of paths (relative ones relative to `root`), or a dask Bag / Series of paths.
    client: a distributed.Client (default: the current one). write_on: "workers" (out on a shared
    file system) or "client". progress: called as progress(done_parts, total_parts).
    Raises vqm.jobs.JobError when `out` holds another job; a part that fails on every retry
    raises its exception (rerun to resume: complete parts are kept)."""
    distributed = _distributed()
    if write_on not in ("workers", "client"):
        raise ValueError("write_on must be 'workers' or 'client', got %r" % (write_on,))
    client = client or distributed.get_client()
    listing = jobs.listing_of(_materialize(images), root)
    model = os.path.abspath(model)
    out = os.path.abspath(out)
    listing.root = os.path.abspath(listing.root) if listing.root else listing.root
    with Model(model) as m:
        index = jobs.job_index(model, m, listing, part_size, top)
    jobs.open_job(out, index)
    todo = [k for k in range(index["parts"]) if not jobs.part_complete(out, k)]
    summary = {"parts": index["parts"], "written": 0, "skipped": index["parts"] - len(todo),
               "errors": 0}
    # Task keys name the job, the folder and the part: runs submitting the same part share it.
    job = "%08x" % zlib.crc32(jobs.dump_line(index) + os.fsencode(out) + write_on.encode())
    futures = []
    for k in todo:
        names, first = jobs.part_images(listing, index, k)
        futures.append(client.submit(
            _part_task, model, listing.root, names.names, k, first, index["top"], batch,
            out if write_on == "workers" else None, retries=retries,
            key="vqm-part-%s-%d" % (job, k)))
    done = summary["skipped"]
    for future in distributed.as_completed(futures):
        r = future.result()
        future.release()
        if "npy" in r:
            jobs.write_part(out, r["part"], r["npy"], r["json"])
        summary["skipped" if r["skipped"] else "written"] += 1
        summary["errors"] += r["errors"]
        done += 1
        if progress:
            progress(done, index["parts"])
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python3 -m vqm.dask",
        description="Classify or embed a folder or manifest of images on a Dask cluster into "
        "OUT (the parts + index.json of vit-run --out; resumable).")
    p.add_argument("source", nargs="?", help="image folder (or use --manifest)")
    p.add_argument("--model", required=True, help="the .vqm model (same path on every worker)")
    p.add_argument("--out", required=True, help="output folder (shared by the workers)")
    p.add_argument("--manifest", help="file of image paths, one per line")
    p.add_argument("--scheduler", help="tcp://HOST:8786 (default: a local cluster)")
    p.add_argument("--workers", type=int, default=1, help="local cluster: worker processes")
    p.add_argument("--threads", type=int, default=0,
                   help="local cluster: threads per worker (default: cores / workers)")
    p.add_argument("--part-size", type=int, default=1024)
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--write-on", choices=("workers", "client"), default="workers")
    a = p.parse_args(argv)
    if (a.source is None) == (a.manifest is None):
        p.error("give an image folder or --manifest FILE (one of them)")
    distributed = _distributed()
    if a.scheduler:
        client = distributed.Client(a.scheduler)
    else:
        threads = a.threads or max(1, (os.cpu_count() or 1) // a.workers)
        client = distributed.Client(local_cluster(a.workers, threads))
    start, last = time.monotonic(), [0.0]

    def progress(done, total):
        if time.monotonic() - last[0] > 5 or done == total:
            last[0] = time.monotonic()
            print("vqm.dask: %d/%d parts (%.0f s)" % (done, total, last[0] - start),
                  file=sys.stderr)

    with client:
        try:
            s = run(a.model, a.manifest or a.source, a.out, client=client,
                    part_size=a.part_size, top=a.top, batch=a.batch, write_on=a.write_on,
                    progress=progress)
        except (jobs.JobError, OSError) as e:
            print("vqm.dask: error: %s" % e, file=sys.stderr)
            return 1
    print("vqm.dask: %s: %d parts written (%d images with errors), %d already complete"
          % (a.out, s["written"], s["errors"], s["skipped"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    # Through the importable module: tasks pickled from __main__ would not unpickle on workers.
    from vqm.dask import main as _main

    sys.exit(_main())
