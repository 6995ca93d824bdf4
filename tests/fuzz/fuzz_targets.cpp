#include "fuzz_targets.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>

#include "apps/data/idx.h"
#include "models/convert.h"
#include "runtime/engine/vit.h"
#include "runtime/io/error.h"
#include "runtime/io/format.h"
#include "runtime/io/image.h"
#include "runtime/io/pth.h"
#include "runtime/io/safetensors.h"

namespace vqm::fuzz {

void check_failed(const char *cond, const char *file, int line) {
  std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", file, line, cond);
  std::abort();
}

namespace {

// vqm::Error is how vqm refuses input; everything else propagates to the fuzzer as a finding.
template <class Fn>
Outcome guarded(Fn &&fn) {
  try {
    fn();
    return Outcome::accepted;
  } catch (const Error &) {
    return Outcome::rejected;
  }
}

// Reads every byte of a tensor, so the sanitizers see an out-of-range data pointer.
void touch(const TensorInfo &t) {
  unsigned sum = 0;
  for (uint64_t i = 0; i < t.nbytes; ++i) sum += t.data[i];
  volatile unsigned sink = sum;
  (void)sink;
}

bool same_tensors(const std::vector<TensorInfo> &a, const std::vector<TensorInfo> &b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const TensorInfo &x = a[i], &y = b[i];
    if (x.name != y.name || x.dtype != y.dtype || x.shape != y.shape || x.nbytes != y.nbytes ||
        x.scale != y.scale || x.quant_axis != y.quant_axis ||
        (x.nbytes && std::memcmp(x.data, y.data, x.nbytes) != 0))
      return false;
  }
  return true;
}

// Whatever the reader accepts, the writer must write back and the reader read again unchanged.
void check_round_trip(const VqmFile &f) {
  VqmWriter w;
  w.set_meta(f.meta());
  for (const auto &t : f.tensors()) {
    touch(t);
    w.add_tensor(t.name, t.dtype, t.shape, t.data, t.nbytes, t.scale, t.quant_axis);
  }
  const std::vector<uint8_t> bytes = w.to_bytes();
  const VqmFile g = VqmFile::from_memory(bytes.data(), bytes.size());
  VQM_FUZZ_CHECK(g.meta() == f.meta());
  VQM_FUZZ_CHECK(same_tensors(f.tensors(), g.tensors()));
}

// Small enough that building a session and running it costs about a millisecond.
bool tiny(const VitConfig &c) {
  return c.input_size() <= 3 * 16 * 16 && c.tokens() <= 32 && c.embed_dim <= 64 &&
         c.mlp_hidden <= 256 && c.depth <= 2 && c.num_classes <= 64 && c.num_heads <= 8;
}

// Loads the model; a tiny one also runs once, on values that include the awkward ones (huge,
// zero, negative zero, infinities, NaN): a forward may give garbage logits for those, but must
// not crash or trip UBSan (float-to-int conversions in the quantizing kernels).
void check_model(VqmFile file, bool simulate) {
  const auto model = VitModel::load(std::move(file));
  const VitConfig &c = model->config();
  VQM_FUZZ_CHECK(model->labels().size() == static_cast<size_t>(c.num_classes));
  if (!tiny(c)) return;
  SessionOptions so;
  so.n_threads = 1;  // no OpenMP worker threads inside a fuzzing process
  so.max_batch = 2;
  so.simulate = simulate;
  VitSession session(model, so);
  const size_t n = static_cast<size_t>(c.input_size());
  std::vector<float> input(2 * n);
  static const float kOdd[] = {1e30f, -1e30f, 0.f, -0.f, INFINITY, -INFINITY, NAN, 3.5f};
  for (size_t i = 0; i < n; ++i) {
    input[i] = std::sin(static_cast<float>(i)) * 2.f;  // an ordinary image
    input[n + i] = kOdd[i % 8];
  }
  std::vector<float> logits(2 * static_cast<size_t>(c.num_classes));
  session.run(input.data(), 2, logits.data());
}

}  // namespace

Outcome run_vqm(const uint8_t *data, size_t size) {
  return guarded([&] {
    VqmFile f = VqmFile::from_memory(data, size, default_limits(), "<fuzz>");
    check_round_trip(f);
    check_model(std::move(f), size % 2 == 1);
  });
}

std::vector<uint8_t> vqm_from_config_input(const uint8_t *data, size_t size) {
  const auto *nul = static_cast<const uint8_t *>(std::memchr(data, 0, size));
  const size_t json_size = nul ? static_cast<size_t>(nul - data) : size;
  const size_t data_size = nul ? size - json_size - 1 : 0;
  const size_t data_offset =
      (kVqmHeaderSize + json_size + kVqmAlignment - 1) / kVqmAlignment * kVqmAlignment;
  std::vector<uint8_t> file(data_offset + data_size, 0);
  const uint64_t fields[] = {kVqmHeaderSize, json_size, data_offset, data_size};
  std::memcpy(file.data(), "VQMF", 4);
  const uint32_t words[] = {kVqmVersion, kVqmHeaderSize, kVqmAlignment};
  for (int i = 0; i < 3; ++i)
    for (int b = 0; b < 4; ++b) file[4 + 4 * i + b] = static_cast<uint8_t>(words[i] >> (8 * b));
  for (int i = 0; i < 4; ++i)
    for (int b = 0; b < 8; ++b) file[16 + 8 * i + b] = static_cast<uint8_t>(fields[i] >> (8 * b));
  if (json_size) std::memcpy(file.data() + kVqmHeaderSize, data, json_size);
  if (data_size) std::memcpy(file.data() + data_offset, nul + 1, data_size);
  return file;
}

Outcome run_config(const uint8_t *data, size_t size) {
  const std::vector<uint8_t> file = vqm_from_config_input(data, size);
  return run_vqm(file.data(), file.size());
}

std::vector<uint8_t> config_input_from_vqm(const std::vector<uint8_t> &vqm) {
  auto u64 = [&](size_t at) {
    uint64_t v = 0;
    for (int b = 7; b >= 0; --b) v = (v << 8) | vqm.at(at + static_cast<size_t>(b));
    return static_cast<size_t>(v);
  };
  const size_t json_offset = u64(16), json_size = u64(24), data_offset = u64(32);
  std::vector<uint8_t> out(vqm.begin() + static_cast<std::ptrdiff_t>(json_offset),
                           vqm.begin() + static_cast<std::ptrdiff_t>(json_offset + json_size));
  out.push_back(0);
  out.insert(out.end(), vqm.begin() + static_cast<std::ptrdiff_t>(data_offset), vqm.end());
  return out;
}

Outcome run_safetensors(const uint8_t *data, size_t size) {
  return guarded([&] {
    const SafetensorsFile st = SafetensorsFile::from_memory(data, size, default_limits(), "<fuzz>");
    uint64_t last = 0;
    for (const auto &t : st.tensors()) {
      touch(t);
      VQM_FUZZ_CHECK(t.offset >= last);  // file order
      last = t.offset;
    }
    // The converter trusts the reader's shapes; what it writes must be a valid container.
    std::vector<uint8_t> bytes;
    try {
      bytes = convert_timm(st, {}).to_bytes();
    } catch (const Error &) {
      return;  // refused by the converter: still an accepted safetensors file
    }
    VqmFile out;
    try {
      out = VqmFile::from_memory(bytes.data(), bytes.size());
    } catch (const Error &e) {
      std::fprintf(stderr, "convert_timm wrote an unreadable .vqm: %s\n", e.what());
      VQM_FUZZ_CHECK(!"converter output is a valid .vqm");
    }
    try {
      check_model(std::move(out), false);
    } catch (const Error &) {
      // vit-convert reports these (it loads its output before writing it).
    }
  });
}

Outcome run_image(const uint8_t *data, size_t size) {
  if (size < 1) return Outcome::rejected;
  const uint8_t opt = data[0];
  // Lower than the defaults so one input decodes in milliseconds; the checks are the same.
  Limits limits;
  limits.max_image_side = 4096;
  limits.max_image_pixels = uint64_t{1} << 22;
  PreprocessConfig cfg;
  cfg.channels = (opt & 1) ? 3 : 1;
  const Interpolation interps[] = {Interpolation::bicubic, Interpolation::bilinear,
                                   Interpolation::nearest, Interpolation::bicubic};
  cfg.interpolation = interps[(opt >> 1) & 3];
  cfg.crop = 1 + ((opt >> 3) & 7) * 4;
  cfg.resize = cfg.crop + ((opt >> 6) & 3) * 3;
  cfg.mean.assign(static_cast<size_t>(cfg.channels), 0.5f);
  cfg.std.assign(static_cast<size_t>(cfg.channels), 0.25f);
  return guarded([&] {
    const Image img = decode_image_memory(data + 1, size - 1, cfg.channels, limits, "<fuzz>");
    VQM_FUZZ_CHECK(img.width >= 1 && img.height >= 1 &&
                   static_cast<uint64_t>(img.width) <= limits.max_image_side &&
                   static_cast<uint64_t>(img.height) <= limits.max_image_side);
    VQM_FUZZ_CHECK(img.channels == cfg.channels &&
                   img.pixels.size() == static_cast<size_t>(img.width) * img.height * img.channels);
    std::vector<float> out(static_cast<size_t>(cfg.channels) * cfg.crop * cfg.crop);
    preprocess_image(img, cfg, out.data());
    for (float v : out) VQM_FUZZ_CHECK(v >= -2.f && v <= 2.f);  // (x/255 - 0.5) / 0.25
  });
}

Outcome run_idx(const uint8_t *data, size_t size) {
  if (size < 1) return Outcome::rejected;
  // The idx reader takes a path: a memory file keeps the fuzzer off the disk.
  static const int fd = memfd_create("vqm-fuzz-idx", MFD_CLOEXEC);
  VQM_FUZZ_CHECK(fd >= 0);
  VQM_FUZZ_CHECK(ftruncate(fd, 0) == 0);
  size_t done = 1;
  while (done < size) {
    const ssize_t n = pwrite(fd, data + done, size - done, static_cast<off_t>(done - 1));
    VQM_FUZZ_CHECK(n > 0);
    done += static_cast<size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  return guarded([&] {
    if (data[0] & 1) {
      const std::vector<uint8_t> labels = load_idx_labels(path);
      VQM_FUZZ_CHECK(labels.size() <= size * 1032);
    } else {
      const IdxImages img = load_idx_images(path);
      VQM_FUZZ_CHECK(img.pixels.size() ==
                     static_cast<size_t>(img.count) * img.rows * static_cast<size_t>(img.cols));
    }
  });
}

Outcome run_pth(const uint8_t *data, size_t size) {
  return guarded([&] {
    const PthFile f = PthFile::from_memory(data, size, default_limits(), "<fuzz>");
    std::set<std::string> names;
    // Views may share bytes: thousands of views of one big storage would make reading them all
    // a timeout of this harness, not of the reader. Past a budget, each tensor's first and last
    // byte stand for its range.
    uint64_t budget = uint64_t{64} << 20;
    for (const auto &t : f.tensors()) {
      if (t.nbytes <= budget) {
        touch(t);
        budget -= t.nbytes;
      } else if (t.nbytes != 0) {
        volatile uint8_t ends = static_cast<uint8_t>(t.data[0] ^ t.data[t.nbytes - 1]);
        (void)ends;
      }
      uint64_t n = 0;
      VQM_FUZZ_CHECK(dtype_nbytes(t.dtype, t.shape, &n) && n == t.nbytes);
      VQM_FUZZ_CHECK(t.offset <= size && t.nbytes <= size - t.offset);  // inside the file
      VQM_FUZZ_CHECK(!t.name.empty() && names.insert(t.name).second);
      VQM_FUZZ_CHECK(f.find(t.name) == &t);
    }
  });
}

const std::vector<Target> &targets() {
  static const std::vector<Target> t = {{"vqm", run_vqm},     {"safetensors", run_safetensors},
                                        {"image", run_image}, {"config", run_config},
                                        {"idx", run_idx},     {"pth", run_pth}};
  return t;
}

}  // namespace vqm::fuzz
