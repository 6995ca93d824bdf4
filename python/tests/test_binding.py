"""The Python binding against the same PyTorch references as the C API test (tests/capi), plus
its input validation and error reporting.

Environment (set by CTest, see tests/CMakeLists.txt): VQM_LIBRARY (libvqm.so), VQM_TEST_MODEL
(the Fashion-MNIST DeiT-Tiny converted by vit-convert), VQM_TEST_DATA_DIR (tests/data),
VQM_EXPECTED_VERSION (CMake's project version).
Run: python3 -m unittest discover -s python/tests
"""

import os
import re
import tempfile
import threading
import unittest

import numpy as np

import vqm


def _env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError("%s is not set (run these tests through ctest)" % name)
    return value


MODEL = _env("VQM_TEST_MODEL")
DATA = _env("VQM_TEST_DATA_DIR")
N_IMAGES, N_CLASSES = 4, 10


def reference():
    """The first 4 t10k images preprocessed, and PyTorch's fp32 logits for them."""
    x = np.fromfile(os.path.join(DATA, "reference/fmnist_first4_input.f32"), dtype="<f4")
    y = np.fromfile(os.path.join(DATA, "reference/fmnist_first4_logits.f32"), dtype="<f4")
    return x.reshape(N_IMAGES, 1, 28, 28), y.reshape(N_IMAGES, N_CLASSES)


class ModelTest(unittest.TestCase):
    def test_version_is_the_project_version(self):
        self.assertRegex(vqm.version(), r"^\d+\.\d+\.\d+$")
        self.assertEqual(vqm.version(), _env("VQM_EXPECTED_VERSION"))

    def test_geometry_and_labels(self):
        with vqm.Model(MODEL) as model:
            self.assertEqual(model.n_classes, N_CLASSES)
            self.assertEqual(model.input_shape, (1, 28, 28))
            labels = model.labels
            self.assertEqual(len(labels), N_CLASSES)
            self.assertEqual(labels[0], "T-shirt/top")
            self.assertEqual(labels[9], "Ankle boot")

    def test_closed_model_raises(self):
        model = vqm.Model(MODEL)
        model.close()
        model.close()  # idempotent
        with self.assertRaisesRegex(ValueError, "closed"):
            model.n_classes


class RunTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = vqm.Model(MODEL)
        cls.x, cls.ref = reference()

    def test_logits_match_pytorch(self):
        # The tolerance of tests/capi: fp32 with a different summation order than PyTorch.
        session = vqm.Session(self.model, n_threads=1, max_batch=N_IMAGES)
        logits = session.run(self.x)
        self.assertEqual(logits.shape, (N_IMAGES, N_CLASSES))
        self.assertEqual(logits.dtype, np.float32)
        self.assertLess(np.abs(logits - self.ref).max(), 1e-3)
        np.testing.assert_array_equal(logits.argmax(1), self.ref.argmax(1))

    def test_more_images_than_max_batch(self):
        session = vqm.Session(self.model, max_batch=3)
        logits = session.run(self.x)
        self.assertLess(np.abs(logits - self.ref).max(), 1e-3)

    def test_empty_batch(self):
        session = vqm.Session(self.model)
        out = session.run(np.zeros((0, 1, 28, 28), np.float32))
        self.assertEqual(out.shape, (0, N_CLASSES))

    def test_from_bytes_gives_the_same_model(self):
        with open(MODEL, "rb") as f:
            data = f.read()
        model = vqm.Model.from_bytes(data)
        a = vqm.Session(model, n_threads=1, max_batch=N_IMAGES).run(self.x)
        b = vqm.Session(self.model, n_threads=1, max_batch=N_IMAGES).run(self.x)
        np.testing.assert_array_equal(a, b)

    def test_image_file(self):
        # t10k image 0 is an ankle boot; the PNG decodes to the reference's first input.
        session = vqm.Session(self.model)
        png = os.path.join(DATA, "images/fmnist_t10k_0_ankle_boot.png")
        logits = session.run_image_file(png)
        self.assertEqual(logits.shape, (N_CLASSES,))
        self.assertEqual(int(logits.argmax()), 9)
        self.assertLess(np.abs(logits - self.ref[0]).max(), 1e-3)

    def test_preprocess_then_run_equals_run_image_file(self):
        session = vqm.Session(self.model, n_threads=1, max_batch=2)
        png = os.path.join(DATA, "images/fmnist_t10k_0_ankle_boot.png")
        pixels = self.model.preprocess_image_file(png)
        self.assertEqual((pixels.shape, pixels.dtype), ((1, 28, 28), np.float32))
        np.testing.assert_array_equal(pixels, self.x[0])  # the reference's first input
        batch = np.zeros((2, 1, 28, 28), np.float32)
        self.assertIs(self.model.preprocess_image_file(png, out=batch[1]).base, batch)
        np.testing.assert_array_equal(session.run(batch)[1], session.run_image_file(png))
        with self.assertRaisesRegex(ValueError, "C-contiguous float32 array of shape"):
            self.model.preprocess_image_file(png, out=np.zeros((1, 28, 27), np.float32))
        with self.assertRaises(vqm.Error) as e:
            self.model.preprocess_image_file("/nonexistent.png")
        self.assertEqual(e.exception.status, vqm.Status.IO)
        self.assertIn("/nonexistent.png", e.exception.message)

    def test_threads_share_a_model(self):
        expected = vqm.Session(self.model, n_threads=1, max_batch=N_IMAGES).run(self.x)
        results = [None, None]

        def work(i):
            session = vqm.Session(self.model, n_threads=1, max_batch=N_IMAGES)
            for _ in range(5):
                results[i] = session.run(self.x)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in results:
            np.testing.assert_array_equal(r, expected)


class ValidationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.session = vqm.Session(vqm.Model(MODEL))
        cls.x, _ = reference()

    def test_wrong_dtype(self):
        with self.assertRaisesRegex(TypeError, "float32, got float64"):
            self.session.run(self.x.astype(np.float64))

    def test_not_an_array(self):
        with self.assertRaisesRegex(TypeError, "numpy array, got list"):
            self.session.run(self.x.tolist())

    def test_wrong_shape(self):
        rgb = np.zeros((1, 3, 28, 28), np.float32)
        for bad in (self.x[:, 0], self.x.reshape(4, 1, 14, 56), rgb):
            with self.assertRaisesRegex(ValueError, r"shape \(N, 1, 28, 28\)"):
                self.session.run(bad)

    def test_not_contiguous(self):
        wide = np.zeros((1, 1, 28, 56), np.float32)
        with self.assertRaisesRegex(ValueError, "C-contiguous"):
            self.session.run(wide[:, :, :, ::2])
        with self.assertRaisesRegex(ValueError, "C-contiguous"):
            self.session.run(np.asfortranarray(self.x))

    def test_bad_session_params(self):
        with self.assertRaises(vqm.Error) as cm:
            vqm.Session(vqm.Model(MODEL), max_batch=0)
        self.assertEqual(cm.exception.status, vqm.Status.INVALID_ARGUMENT)
        self.assertIn("max_batch", str(cm.exception))
        with self.assertRaisesRegex(ValueError, "32-bit"):
            vqm.Session(vqm.Model(MODEL), n_threads=2**40)


class ErrorTest(unittest.TestCase):
    def test_missing_file(self):
        with self.assertRaises(vqm.Error) as cm:
            vqm.Model("/nonexistent/model.vqm")
        self.assertEqual(cm.exception.status, vqm.Status.IO)
        self.assertIn("/nonexistent/model.vqm", cm.exception.message)
        self.assertEqual(str(cm.exception), cm.exception.message)

    def test_corrupt_files(self):
        with self.assertRaises(vqm.Error) as cm:
            vqm.Model.from_bytes(b"VQMF")
        self.assertEqual(cm.exception.status, vqm.Status.FORMAT)
        with open(MODEL, "rb") as f:
            head = f.read(4096)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "truncated.vqm")
            with open(path, "wb") as f:
                f.write(head)
            with self.assertRaises(vqm.Error) as cm:
                vqm.Model(path)
        self.assertEqual(cm.exception.status, vqm.Status.FORMAT)
        self.assertTrue(cm.exception.message.startswith(path), cm.exception.message)

    def test_bad_image_then_session_still_works(self):
        session = vqm.Session(vqm.Model(MODEL))
        with self.assertRaises(vqm.Error) as cm:
            session.run_image_file("/nonexistent.png")
        self.assertEqual(cm.exception.status, vqm.Status.IO)
        self.assertRegex(cm.exception.message, re.escape("/nonexistent.png"))
        png = os.path.join(DATA, "images/fmnist_t10k_1_pullover.png")
        self.assertEqual(int(session.run_image_file(png).argmax()), 2)

    def test_library_already_loaded_elsewhere(self):
        self.assertEqual(vqm.load_library(), vqm.load_library())
        with self.assertRaisesRegex(RuntimeError, "already loaded"):
            vqm.load_library("/elsewhere/libvqm.so")


if __name__ == "__main__":
    unittest.main()
