#!/usr/bin/python3
"""Images/s of the Dask path (vqm.dask on a LocalCluster) against plain vit-eval and vit-run --out
on the same machine and the same images, at batch 8: the demo model (Fashion-MNIST DeiT-Tiny,
28x28 t10k PNGs) and DeiT-S W8A8 geometry (random weights from vit-bench, 256x256 RGB PNGs
resized and cropped to 224). Prints a Markdown table for docs/performance.md.

Shapes compared (2 cores): vit-eval --sessions 1 --threads 2 against Dask 1 worker x 2 threads,
and vit-eval --sessions 2 --threads 2 against Dask 2 workers x 1 thread; 1 worker x 2 threads
also with Dask's default settings, to show what vqm.dask.CLUSTER_CONFIG changes. The Dask time
runs from submitting the job to the last part written, with the model already loaded in each
worker (a warm-up job first, as in any job long enough to matter) and Dask's periodic work slowed
down as vqm.dask's own clusters have it (vqm.dask.local_cluster); vit-eval's is its own measured
time (model loading excluded). overhead = Dask s/image / vit-eval s/image - 1 (goal: < 10 %). Each
figure is the best of --repeat runs (the machine drifts 10-30 % between runs; docs/performance.md).

Usage (from the repository, after scripts/setup.sh; a quiet machine, nothing else running):
  /usr/bin/python3 scripts/bench-dask.py [--build build] [--fmnist 10000] [--deit 400] [--repeat 3]
  /usr/bin/python3 scripts/bench-dask.py --fmnist 64 --deit 16 --repeat 1   # a smoke run
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 8


def sh(*argv):
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("bench-dask: %s failed: %s" % (" ".join(argv), r.stderr.strip()))
    return r.stdout


def deit_images(root, n):
    """n 256x256 RGB PNGs with smooth, different content in root/0/ (one class folder)."""
    import numpy as np
    from PIL import Image

    os.makedirs(os.path.join(root, "0"))
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:256, 0:256] / 256.0
    for i in range(n):
        f = rng.uniform(1, 8, size=3)
        img = np.stack([np.sin(f[c] * (x + y * c) + i) for c in range(3)], axis=-1)
        Image.fromarray(((img + 1) * 127.5).astype(np.uint8)).save(
            os.path.join(root, "0", "img_%06d.png" % i))


def vit_eval(bin_dir, model, data, sessions, extra):
    out = sh(os.path.join(bin_dir, "vit-eval"), "--model", model, "--data", data, "--batch",
             str(BATCH), "--threads", "2", "--sessions", str(sessions), "--json", "--quiet", *extra)
    j = json.loads(out)
    return j["n"] / j["seconds"]


def vit_run_job(bin_dir, model, data, out):
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    sh(os.path.join(bin_dir, "vit-run"), "--model", model, "--out", out, "--batch", str(BATCH),
       "--threads", "2", "--quiet", data)
    return time.perf_counter() - t  # model load included (tenths of a second)


# Dask's own values of the settings vqm.dask.CLUSTER_CONFIG changes, read before any cluster.
DASK_DEFAULTS = {}


def cluster(workers, threads, dask_defaults):
    import dask
    import distributed
    import vqm.dask

    if not dask_defaults:
        return vqm.dask.local_cluster(workers, threads, host="127.0.0.1")
    with dask.config.set(DASK_DEFAULTS):
        return distributed.LocalCluster(n_workers=workers, threads_per_worker=threads,
                                        processes=True, host="127.0.0.1", dashboard_address=None)


def dask_rates(model, data, workers, threads, repeat, n, tmp, dask_defaults=False):
    import distributed
    import vqm.dask
    import vqm.jobs

    names = vqm.jobs.list_folder(data).names
    part = max(BATCH, -(-n // (4 * workers * threads)) // BATCH * BATCH)  # >= 4 parts per thread
    with cluster(workers, threads, dask_defaults) as c, distributed.Client(c) as client:
        client.wait_for_workers(workers)
        warm = vqm.jobs.Listing(data, names[:BATCH * workers * threads])
        warm_out = os.path.join(tmp, "warm-%d-%d-%s" % (workers, threads, os.path.basename(model)))
        vqm.dask.run(model, warm, warm_out, client=client, part_size=BATCH, batch=BATCH)
        best = 0.0
        for r in range(repeat):
            out = os.path.join(tmp, "dask-%d-%d-%d" % (workers, threads, r))
            t = time.perf_counter()
            vqm.dask.run(model, data, out, client=client, part_size=part, batch=BATCH)
            best = max(best, n / (time.perf_counter() - t))
            shutil.rmtree(out)
    return best


def bench(name, bin_dir, model, data, n, extra, repeat, tmp):
    best = lambda f: max(f() for _ in range(repeat))  # noqa: E731
    eval12 = best(lambda: vit_eval(bin_dir, model, data, 1, extra))
    eval21 = best(lambda: vit_eval(bin_dir, model, data, 2, extra))
    run12 = best(lambda: n / vit_run_job(bin_dir, model, data, os.path.join(tmp, "run")))
    dask12_defaults = dask_rates(model, data, 1, 2, repeat, n, tmp, dask_defaults=True)
    dask12 = dask_rates(model, data, 1, 2, repeat, n, tmp)
    dask21 = dask_rates(model, data, 2, 1, repeat, n, tmp)
    return [
        (name, "vit-eval, 1 session x 2 threads", eval12, None),
        (name, "vit-eval, 2 sessions x 1 thread", eval21, None),
        (name, "vit-run --out, 2 threads (model load included)", run12, eval12),
        (name, "vqm.dask, 1 worker x 2 threads, Dask's default settings", dask12_defaults, eval12),
        (name, "vqm.dask, 1 worker x 2 threads", dask12, eval12),
        (name, "vqm.dask, 2 workers x 1 thread", dask21, eval21),
    ]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--fmnist", type=int, default=10000, help="t10k images (demo model)")
    p.add_argument("--deit", type=int, default=400, help="224x224 images (DeiT-S W8A8)")
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    bin_dir = os.path.join(os.path.abspath(a.build), "bin")
    os.environ.setdefault("VQM_LIBRARY", os.path.join(os.path.abspath(a.build), "lib", "libvqm.so"))
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    sys.path[:0] = [os.path.join(ROOT, "python"), os.path.join(ROOT, "python", "tests")]
    os.environ["PYTHONPATH"] = os.pathsep.join(sys.path[:2] + [os.environ.get("PYTHONPATH", "")])
    from job_fixtures import write_pngs
    import dask
    import distributed  # noqa: F401 (loads Dask's distributed.* settings)
    import vqm.dask

    DASK_DEFAULTS.update({key: dask.config.get(key) for key in vqm.dask.CLUSTER_CONFIG})

    tmp = tempfile.mkdtemp(prefix="vqm-bench-dask-")
    try:
        fmnist = os.path.join(tmp, "fmnist.vqm")
        sh(os.path.join(bin_dir, "vit-convert"), "--quiet",
           os.path.join(ROOT, "tests/data/models/fmnist_deit_tiny.safetensors"), "-o", fmnist)
        write_pngs(os.path.join(tmp, "fmnist"), a.fmnist)
        deit = os.path.join(tmp, "deit_s.w8a8.vqm")
        sh(os.path.join(bin_dir, "vit-bench"), "--arch", "deit_small_patch16_224", "--precision",
           "w8a8", "--save", deit, "--batch", "1", "--runs", "1", "--min-time", "0", "--warmup",
           "0", "--quiet")
        deit_images(os.path.join(tmp, "deit"), a.deit)
        with open(os.path.join(tmp, "classes.txt"), "w") as f:
            f.write("0\n")  # the one image folder is class 0 of the 1000
        rows = bench("demo (DeiT-T, 28x28)", bin_dir, fmnist, os.path.join(tmp, "fmnist"),
                     a.fmnist, [], a.repeat, tmp)
        rows += bench("DeiT-S W8A8 (224x224)", bin_dir, deit, os.path.join(tmp, "deit"), a.deit,
                      ["--class-index", os.path.join(tmp, "classes.txt")], a.repeat, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("| model | path | images/s | overhead per image vs vit-eval |")
    print("|---|---|---:|---:|")
    for model, path, rate, against in rows:
        over = "" if against is None else "%+.1f %%" % (100 * (against / rate - 1))
        print("| %s | %s | %.1f | %s |" % (model, path, rate, over))


if __name__ == "__main__":
    main()
