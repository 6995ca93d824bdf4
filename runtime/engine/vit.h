// ViT family: the model (immutable, shared by threads; vit_model.cpp) and the session (one
// thread's buffers and oneDNN primitives; vit_session.cpp), which runs one of two engines: fp32 /
// simulated (float_engine.cpp; the forward that golden tests and calibration, through taps, use)
// or integer (int_engine.cpp).
#pragma once
#include <cstdint>
#include <dnnl.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "models/layer_table.h"
#include "models/quant_spec.h"
#include "models/vit_config.h"
#include "runtime/io/format.h"

namespace vqm {

struct TapEvent {
  Tap tap;
  int block;  // -1 where not a block's
  const float *data;
  int64_t rows;
  int64_t cols;
};
using TapFn = std::function<void(const TapEvent &)>;

// Integer weights of a quantized linear layer: [n, k] values within the layer's b-bit range, kept
// packed (i8/q4/q6) in the file, and one f32 scale per output row.
struct IntWeight {
  const TensorInfo *tensor = nullptr;  // in the model's file
  std::vector<float> scale;
  int64_t n = 0, k = 0;
  std::vector<int8_t> unpack() const;  // the n*k values as s8, row-major
};

class VitModel {
 public:
  // Validates the document and every tensor the geometry needs (dtype and exact shape), and
  // rejects unexpected tensors so nothing in a file is silently ignored. Throws vqm::Error.
  static std::shared_ptr<const VitModel> load(VqmFile file);
  // The same, mutable: for the quantizer, which edits weights and activation grids between
  // calibration passes. Sessions see edits made before they are created.
  static std::shared_ptr<VitModel> load_mutable(VqmFile file);

  const VitConfig &config() const { return config_; }
  const PreprocessConfig &preprocess() const { return preprocess_; }
  const std::vector<std::string> &labels() const { return labels_; }
  const VqmFile &file() const { return file_; }

  // fp32 view of a tensor (points into the file when stored as f32, else into a converted copy).
  // Integer weights are dequantized on first use only (simulated execution, the quantizer):
  // integer sessions never pay for an fp32 copy. Thread-safe.
  const float *weight(const std::string &name) const;
  // The linear weight `name` ([N,K]) reordered to `layout`; packed once per distinct layout and
  // shared by every session of this model. Thread-safe.
  dnnl::memory packed_weight(const std::string &name, const dnnl::memory::desc &layout) const;
  // The integer form of a quantized linear weight; nullptr for weights stored as floats.
  const IntWeight *int_weight(const std::string &name) const;
  // int_weight(name) reordered (s8) to `layout`, packed once per layout and shared. Thread-safe.
  dnnl::memory packed_weight_s8(const std::string &name, const dnnl::memory::desc &layout) const;
  // Activation quantization of a quantized model (simulated in fp32); nullptr for fp32 models.
  const ModelQuant *quant() const { return quant_.has_value() ? &*quant_ : nullptr; }

  // Quantizer-only mutators (not thread-safe; no session may be running).
  void set_weight(const std::string &name, std::vector<float> values);
  void set_quant(std::optional<ModelQuant> q) { quant_ = std::move(q); }

 private:
  VqmFile file_;
  VitConfig config_;
  PreprocessConfig preprocess_;
  std::vector<std::string> labels_;
  std::vector<std::pair<std::string, const float *>> weights_;  // sorted by name; not int ones
  std::map<std::string, std::vector<float>> converted_;  // owners of non-f32 / edited tensors
  std::optional<ModelQuant> quant_;
  std::map<std::string, IntWeight> int_weights_;
  // Guards packed_ and the lazily dequantized integer weights in dequantized_.
  mutable std::mutex pack_mutex_;
  mutable std::map<std::string, std::vector<float>> dequantized_;
  mutable std::vector<std::pair<std::string, dnnl::memory>> packed_;
};

class Engine;  // runtime/engine/engine.h

// Wall time of a session's forward passes by kind of operation (SessionOptions::profile).
struct OpProfile {
  enum Op {
    gemm_linear,
    gemm_attention,
    softmax,
    layernorm,
    gelu,
    quantize_reorder,
    wait,  // integer path: thread 0 waiting at a block's barrier for the other threads
    other,
    count
  };
  static const char *name(int op);
  double seconds[count] = {};
  int64_t forwards = 0;
  double total() const;
};

struct SessionOptions {
  int max_batch = 1;  // images per internal forward; larger requests are split
  // OpenMP threads; 0: OpenMP's default at session creation. The integer path splits each
  // batch's rows into this many chunks when the session is created.
  int n_threads = 0;
  // Quantized models run on integer kernels (u8 x s8 oneDNN matmuls) unless `simulate` is set
  // (or VQM_EXECUTION=simulated): then in fp32 arithmetic on dequantized values, the quantizer's
  // own view of the model. The two agree up to float rounding.
  bool simulate = false;
  // Time every operation of run() into profile(). Each op is timed between synchronous calls
  // (oneDNN's CPU stream and our kernels return when done), so this adds two clock reads per op.
  bool profile = false;
};

class VitSession {
 public:
  // Creates every primitive and buffer the session will need; run() allocates nothing of its
  // own. Throws vqm::Error.
  VitSession(std::shared_ptr<const VitModel> model, const SessionOptions &options);
  ~VitSession();
  VitSession(const VitSession &) = delete;
  VitSession &operator=(const VitSession &) = delete;

  // nchw: n images of config().input_size() floats (already preprocessed); out: n x
  // config().n_outputs() (logits, or embeddings for a model without a head).
  void run(const float *nchw, int64_t n, float *out, const TapFn *taps = nullptr);
  // The forward of n images resumed at block `first` (0 <= first <= depth) from their residual
  // stream `x`: n x tokens() x embed_dim floats, what Tap::block_out of block first - 1 shows
  // (Tap::embed for block 0). Taps before block `first` do not fire. fp32 and simulated sessions
  // only (vqm::Error unsupported otherwise): the quantizer replays from the block it is deciding
  // instead of from the image.
  void run_from(int first, const float *x, int64_t n, float *out, const TapFn *taps = nullptr);

  const VitModel &model() const { return *model_; }
  // "op: impl" for every distinct primitive, for VQM_VERBOSE and the bench tool.
  std::vector<std::string> kernel_report() const;
  // Accumulated since creation or the last reset (empty unless SessionOptions::profile).
  const OpProfile &profile() const { return profile_; }
  void reset_profile() { profile_ = OpProfile{}; }

 private:
  std::shared_ptr<const VitModel> model_;
  SessionOptions options_;
  std::vector<int> sizes_;  // planned batch sizes: powers of two, then max_batch
  std::unique_ptr<Engine> engine_;
  OpProfile profile_;
  // Splits n items of `in_size` floats into planned batches: forward(in, chunk, out) per batch.
  // A template (defined in vit_session.cpp, its only user), not a std::function: run()'s
  // callable would not fit std::function's small buffer and cost an allocation per call.
  template <class Forward>
  void split(const float *in, int64_t in_size, int64_t n, float *out, Forward &&forward);
};

}  // namespace vqm
