"""vqm.dask on a LocalCluster of two worker processes (one thread each, loopback), one of them
SIGKILLed while it works: the job still ends with every one of 1000 t10k PNGs exactly once, its
outputs equal `vit-eval --dump-logits` on the same images bit for bit (same batches of 8, one
thread), and four `vit-run --shard i/4` runs write the same parts and index byte for byte, as
does the same job with write_on="client".

Environment (set by CTest): VQM_LIBRARY, VQM_TEST_MODEL, VQM_TOOLS_DIR. Needs python3-dask,
python3-distributed and python3-pil.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import numpy as np

import vqm.jobs as jobs
from job_fixtures import files_of, write_pngs

MODEL = os.environ.get("VQM_TEST_MODEL", "")
TOOLS = os.environ.get("VQM_TOOLS_DIR", "")
N_IMAGES, PART_SIZE, BATCH = 1000, 40, 8  # 25 parts, each 5 whole batches


def tool(name, *args):
    r = subprocess.run([os.path.join(TOOLS, name), "--quiet", "--threads", "1", "--model", MODEL]
                       + list(args), capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("%s %s: %s" % (name, " ".join(args), r.stderr))


class LocalClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="vqm-dask-")
        cls.images = os.path.join(cls.tmp, "images")
        write_pngs(cls.images, N_IMAGES)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def run_killing_one_worker(self, out):
        """Runs the job on two single-threaded worker processes and SIGKILLs the one working on
        a part as soon as the first part is complete; returns (summary, killed worker address)."""
        import distributed
        import vqm.dask

        cluster = vqm.dask.local_cluster(2, 1, host="127.0.0.1")  # the shipped Dask settings
        with cluster, distributed.Client(cluster) as client:
            client.wait_for_workers(2)
            pids = client.run(os.getpid)
            result = {}

            def job():
                try:
                    result["summary"] = vqm.dask.run(MODEL, self.images, out, client=client,
                                                     part_size=PART_SIZE, batch=BATCH)
                except BaseException as e:  # reported by the test thread
                    result["error"] = e

            runner = threading.Thread(target=job)
            runner.start()
            victim = None
            deadline = time.monotonic() + 120
            while victim is None and time.monotonic() < deadline and runner.is_alive():
                if jobs.part_complete(out, 0) or jobs.part_complete(out, 1):
                    busy = [w for w, keys in client.processing().items() if keys and w in pids]
                    if busy:
                        victim = busy[0]
                        os.kill(pids[victim], signal.SIGKILL)
                time.sleep(0.002)
            runner.join(300)
            self.assertFalse(runner.is_alive(), "the job did not finish")
            if "error" in result:
                raise result["error"]
            # The same job with the parts sent back and written by the client.
            by_client = vqm.dask.run(MODEL, self.images, out + "-client", client=client,
                                     part_size=PART_SIZE, batch=BATCH, write_on="client")
            self.assertEqual(by_client["written"], N_IMAGES // PART_SIZE)
            return result["summary"], victim

    def test_the_documented_environment_is_the_cluster_config(self):
        """docs/batch-jobs.md's DASK_* exports, parsed by Dask, are vqm.dask.CLUSTER_CONFIG."""
        import re

        import dask.config
        import vqm.dask

        doc = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "batch-jobs.md")
        with open(doc) as f:
            env = dict(re.findall(r"\b(DASK_[A-Z_]+)=(\S+)", f.read()))
        self.assertEqual(len(env), len(vqm.dask.CLUSTER_CONFIG))
        with dask.config.set(dask.config.collect_env(env)):
            for key, value in vqm.dask.CLUSTER_CONFIG.items():
                self.assertEqual(dask.config.get(key), value, key)

    def test_a_killed_worker_costs_only_its_parts(self):
        out = os.path.join(self.tmp, "dask")
        summary, victim = self.run_killing_one_worker(out)
        self.assertIsNotNone(victim, "no worker was killed while working")
        self.assertEqual(summary["parts"], N_IMAGES // PART_SIZE)
        self.assertEqual(summary["written"] + summary["skipped"], summary["parts"])
        self.assertEqual(summary["errors"], 0)

        # Every image exactly once, in listing order, nothing half-written left behind.
        res = jobs.read(out)
        listed = jobs.list_folder(self.images).names
        self.assertEqual(len(listed), N_IMAGES)
        self.assertEqual(res.names, listed)
        self.assertEqual(len(set(res.names)), N_IMAGES)
        self.assertEqual(res.errors, [])
        leftovers = [n for n in os.listdir(out) if n.startswith(".")]
        self.assertTrue(all(".tmp." in n for n in leftovers), leftovers)

        # The same numbers as vit-eval on the same folder (class folders, sorted order).
        dump = os.path.join(self.tmp, "eval.f32")
        tool("vit-eval", "--data", self.images, "--batch", str(BATCH), "--sessions", "1",
             "--dump-logits", dump)
        expect = np.fromfile(dump, dtype="<f4").reshape(N_IMAGES, -1)
        np.testing.assert_array_equal(res.outputs, expect)

        # Four command-line shards: the same parts and index, byte for byte.
        sharded = os.path.join(self.tmp, "shards")
        for i in range(4):
            tool("vit-run", "--out", sharded, "--shard", "%d/4" % i, "--part-size",
                 str(PART_SIZE), "--batch", str(BATCH), self.images)
        dask_files = {n: b for n, b in files_of(out).items() if not n.startswith(".")}
        self.assertEqual(dask_files, files_of(sharded))
        self.assertEqual(files_of(out + "-client"), files_of(sharded))


if __name__ == "__main__":
    try:
        import distributed  # noqa: F401
    except ImportError:
        print("skipped: python3-dask and python3-distributed are not installed")
        raise SystemExit(77)  # CTest's SKIP_RETURN_CODE
    unittest.main()
