"""Batch jobs from Python (vqm.jobs) against the command line (vit-run --out): the same parts and
index byte for byte, each side resuming the other's shards, a folder of another job refused, a
missing part reported, and vqm importing without Dask.

Environment (set by CTest): VQM_LIBRARY, VQM_TEST_MODEL (the Fashion-MNIST model),
VQM_TEST_DATA_DIR, VQM_TOOLS_DIR (the folder of vit-run).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

import vqm
import vqm.jobs as jobs
from job_fixtures import files_of, write_pngs

MODEL = os.environ.get("VQM_TEST_MODEL", "")
TOOLS = os.environ.get("VQM_TOOLS_DIR", "")
DATA = os.environ.get("VQM_TEST_DATA_DIR", "")


def make_images(root, n):
    """The first n t10k images as PNGs root/<class>/t10k_<i>.png (PIL), a corrupt one, an empty
    one, a hidden one and an upper-case extension (listing rules)."""
    write_pngs(root, n)
    with open(os.path.join(root, "3", "corrupt.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n\x00\x01")
    open(os.path.join(root, "7", "empty.jpg"), "wb").close()
    shutil.copy(os.path.join(root, "9", "t10k_00000.png"), os.path.join(root, "9", ".hidden.png"))
    shutil.copy(os.path.join(root, "9", "t10k_00000.png"), os.path.join(root, "9", "UPPER.PNG"))


def vit_run(*args):
    r = subprocess.run([os.path.join(TOOLS, "vit-run"), "--quiet", "--threads", "1",
                        "--model", MODEL] + list(args), capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("vit-run %s: %s" % (" ".join(args), r.stderr))
    return r.stderr


class JobsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="vqm-jobs-")
        cls.images = os.path.join(cls.tmp, "images")
        make_images(cls.images, 70)
        cls.cli = os.path.join(cls.tmp, "cli")
        vit_run("--part-size", "16", "--out", cls.cli, cls.images)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def out(self, name):
        return os.path.join(self.tmp, name)

    def test_python_writes_the_same_bytes_as_the_command_line(self):
        done = jobs.run(MODEL, self.images, self.out("py"), part_size=16, n_threads=1)
        self.assertEqual(done["written"], [0, 1, 2, 3, 4])
        self.assertEqual(done["errors"], 2)
        cli, py = files_of(self.cli), files_of(self.out("py"))
        self.assertEqual(sorted(cli), ["index.json"] + ["part-%06d.%s" % (k, e) for k in range(5)
                                                         for e in ("json", "npy")])
        self.assertEqual(cli, py)

    def test_listing_rules(self):
        names = jobs.list_folder(self.images).names
        self.assertEqual(len(names), 73)  # 70 + corrupt + empty + UPPER.PNG; not .hidden.png
        self.assertIn("9/UPPER.PNG", names)
        self.assertEqual(names, sorted(names))

    def test_each_side_resumes_the_other(self):
        out = self.out("mixed")
        vit_run("--part-size", "16", "--shard", "0/2", "--out", out, self.images)
        done = jobs.run(MODEL, self.images, out, shard="1/2", part_size=16, n_threads=1)
        self.assertEqual(done["written"], [1, 3])
        os.remove(os.path.join(out, "part-000003.json"))  # as if killed before the commit
        log = vit_run("--part-size", "16", "--out", out, self.images)
        self.assertIn("1 parts written (16 images, 1 errors), 4 already complete", log)
        self.assertEqual(files_of(out), files_of(self.cli))

    def test_read_gives_every_image_once_in_listing_order(self):
        res = jobs.read(self.cli)
        listed = jobs.list_folder(self.images).names
        self.assertEqual(res.names, [n for n in listed if n not in ("3/corrupt.png", "7/empty.jpg")])
        self.assertEqual([e["image"] for e in res.errors], ["3/corrupt.png", "7/empty.jpg"])
        self.assertEqual(res.outputs.shape, (71, 10))
        with vqm.Model(MODEL) as m, vqm.Session(m, n_threads=1) as s:
            i = res.names.index("9/t10k_00000.png")
            expect = s.run_image_file(os.path.join(self.images, res.names[i]))
        np.testing.assert_array_equal(res.outputs[i], expect)
        self.assertEqual(res.top[i][0], 9)
        self.assertEqual(res.labels[res.top[i][0]], "Ankle boot")
        self.assertAlmostEqual(res.probabilities()[i].sum(), 1.0)

    def test_missing_part_and_another_job_are_errors(self):
        out = self.out("partial")
        jobs.run(MODEL, self.images, out, shard="0/3", part_size=16, n_threads=1)
        with self.assertRaisesRegex(jobs.JobError, "3 of 5 parts are not complete"):
            jobs.read(out)
        self.assertEqual(jobs.missing_parts(out), [1, 2, 4])
        with self.assertRaisesRegex(jobs.JobError, r"another job \(top 5 there, 3 here\)"):
            jobs.run(MODEL, self.images, out, part_size=16, top=3)
        with self.assertRaisesRegex(jobs.JobError, "expected I/N"):
            jobs.run(MODEL, self.images, out, shard="2/2", part_size=16)

    def test_vqm_imports_without_dask_and_says_what_to_install(self):
        code = (
            "import sys\n"
            "sys.modules['distributed'] = None; sys.modules['dask'] = None\n"
            "import vqm, vqm.jobs, vqm.dask\n"
            "try:\n"
            "    vqm.dask.run('m.vqm', ['a.png'], 'out')\n"
            "except ImportError as e:\n"
            "    print(e)\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("apt-get install python3-dask python3-distributed", r.stdout)
        self.assertIn("pip install 'dask[distributed]'", r.stdout)


if __name__ == "__main__":
    unittest.main()
