"""The ViT family as a user meets it: each checkpoint in tests/data/models/family (timm variants,
torchvision as .safetensors and as torch.save's .pth, a Hugging Face snapshot folder) converted by
the vit-convert tool with no flags but what the file cannot say, then

- rows 2-3 of the reference (timm's own noise inputs) through the Python binding (and so the C
  API): the output within 1e-3 of the reference's, scaled to its magnitude where that is above 1;
- rows 0-1 (two photos) through `vit-run --json`, decoded and preprocessed as the checkpoint says:
  the same top-1 class for a classifier, cosine >= 0.9999 to timm's embedding for a model without
  a head;
- the .pth and the .safetensors of torchvision give the same outputs, bit for bit.

The C++ tests (tests/golden/family_*) check the same references through the C++ session; these
check the tools and the binding users call. Environment (set by CTest): VQM_LIBRARY,
VQM_TEST_DATA_DIR, VQM_TOOLS_DIR (the folder holding vit-convert and vit-run).
"""

import json
import os
import struct
import subprocess
import tempfile
import unittest

import numpy as np

import vqm

DATA = os.environ.get("VQM_TEST_DATA_DIR", "")
TOOLS = os.environ.get("VQM_TOOLS_DIR", "")
FAMILY = os.path.join(DATA, "models", "family")
PHOTOS = [os.path.join(DATA, "images", f) for f in ("chelsea.png", "rocket.jpg")]

# name: (input under tests/data/models, reference under tests/data/models/family, extra flags)
CHECKPOINTS = {
    name: ("family/%s.safetensors" % name, "%s.ref.safetensors" % name, [])
    for name in (
        "clip_base_quickgelu",
        "deit3_small_layerscale",
        "dinov2_small_features",
        "dinov2_small_reg4_features",
        "torchvision_vit_b16_small",
        "vit_fcnorm_avg",
        "vit_gap_noclass",
        "vit_noqkvbias",
        "vit_patch32_384",
    )
}
CHECKPOINTS["hf_vit_small"] = ("family/hf_vit_small", "hf_vit_small/reference.safetensors", [])
# A .pth holds no metadata: the head count comes from the flag, as the user guide says.
CHECKPOINTS["torchvision_vit_b16_small_pth"] = (
    "torchvision_vit_b16_small.pth",
    "torchvision_vit_b16_small.ref.safetensors",
    ["--heads", "3"],
)


def read_safetensors(path):
    """The F32 tensors of a safetensors file, as numpy arrays by name."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (path, name, t["dtype"])
        begin, end = t["data_offsets"]
        data = np.frombuffer(blob[8 + n + begin : 8 + n + end], dtype="<f4")
        out[name] = data.reshape(t["shape"])
    return out


def cosine(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@unittest.skipUnless(DATA and TOOLS, "VQM_TEST_DATA_DIR / VQM_TOOLS_DIR not set (run through ctest)")
class FamilyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.models = {}
        for name, (src, _, flags) in CHECKPOINTS.items():
            out = os.path.join(cls.tmp.name, name + ".vqm")
            subprocess.run(
                [os.path.join(TOOLS, "vit-convert"), os.path.join(DATA, "models", src),
                 "-o", out, "--quiet"] + flags,
                check=True,
            )
            cls.models[name] = out

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def outputs(self, name):
        """The binding's outputs for the reference's noise rows."""
        ref = read_safetensors(os.path.join(FAMILY, CHECKPOINTS[name][1]))
        with vqm.Model(self.models[name]) as model, vqm.Session(model, max_batch=2) as session:
            got = session.run(np.ascontiguousarray(ref["noise_pixel_values"]))
            self.assertEqual(got.shape, (2, model.n_outputs))
        return got, ref["output"]

    def test_noise_rows_through_the_binding(self):
        for name in CHECKPOINTS:
            with self.subTest(name):
                got, want = self.outputs(name)
                scale = max(1.0, float(np.abs(want[2:]).max()))
                err = float(np.abs(got - want[2:]).max())
                print("%s: noise rows max abs diff %.3g (scale %.3g)" % (name, err, scale))
                self.assertLessEqual(err, 1e-3 * scale)

    def test_photos_through_vit_run(self):
        for name in CHECKPOINTS:
            with self.subTest(name):
                run = subprocess.run(
                    [os.path.join(TOOLS, "vit-run"), "--model", self.models[name], "--json"]
                    + PHOTOS,
                    check=True, capture_output=True, text=True,
                )
                lines = [json.loads(line) for line in run.stdout.splitlines()]
                self.assertEqual([j["image"] for j in lines], PHOTOS)
                want = read_safetensors(os.path.join(FAMILY, CHECKPOINTS[name][1]))["output"]
                for i, j in enumerate(lines):
                    got = np.array(j["output"], dtype=np.float32)
                    self.assertEqual(got.shape, want[i].shape)
                    if "top" in j:  # a classifier
                        self.assertEqual(j["top"][0]["class"], int(np.argmax(want[i])))
                        self.assertEqual(int(np.argmax(got)), int(np.argmax(want[i])))
                    else:
                        c = cosine(got, want[i])
                        print("%s: %s embedding cosine %.7f" % (name, PHOTOS[i], c))
                        self.assertGreaterEqual(c, 0.9999)

    def test_pth_and_safetensors_agree(self):
        a, _ = self.outputs("torchvision_vit_b16_small")
        b, _ = self.outputs("torchvision_vit_b16_small_pth")
        np.testing.assert_array_equal(a, b)


if __name__ == "__main__":
    unittest.main()
