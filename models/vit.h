// ViT / DeiT: the model (immutable, shared by threads) and the session (one thread's scratch and
// oneDNN primitives). The forward calls kernels/ only; it is the single forward that fp32
// inference, golden tests and calibration (through taps) all use.
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

#include "models/quant_spec.h"
#include "models/vit_config.h"
#include "runtime/format.h"

namespace vqm {

// Points of the forward that can be observed. Data is valid only during the callback.
enum class Tap {
  embed,     // [B*T, D] tokens after position embedding
  patch_in,  // [B*P, C*p*p] flattened patches (input of the patch-embedding matmul)
  qkv_in,    // [B*T, D] input of qkv (after norm1)
  q,
  k,
  v,              // [B*H*T, dh] head-major, before their products
  proj_in,        // [B*T, D] input of proj (merged heads)
  attn_residual,  // [B*T, D] residual stream after the attention branch was added
  fc1_in,         // [B*T, D] input of fc1 (after norm2)
  fc2_in,         // [B*T, hidden] input of fc2 (after GELU)
  attn_probs,     // [B*H*T, T] softmax output of block `block`
  block_out,      // [B*T, D] residual stream after block `block`
  prelogits,      // [B, D] final-norm class token (the head's input)
  // Every tap sees the data as the next op will: after fake quantization when the model has it.
};
struct TapEvent {
  Tap tap;
  int block;  // -1 where not a block's
  const float *data;
  int64_t rows;
  int64_t cols;
};
using TapFn = std::function<void(const TapEvent &)>;

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
  const float *weight(const std::string &name) const;
  // The linear weight `name` ([N,K]) reordered to `layout`; packed once per distinct layout and
  // shared by every session of this model. Thread-safe.
  dnnl::memory packed_weight(const std::string &name, const dnnl::memory::desc &layout) const;
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
  std::vector<std::pair<std::string, const float *>> weights_;  // sorted by name
  std::map<std::string, std::vector<float>> converted_;  // owners of non-f32 / edited tensors
  std::optional<ModelQuant> quant_;
  mutable std::mutex pack_mutex_;
  mutable std::vector<std::pair<std::string, dnnl::memory>> packed_;
};

struct SessionOptions {
  int max_batch = 1;  // images per internal forward; larger requests are split
  int n_threads = 0;  // 0: OpenMP default
};

class VitSession {
 public:
  // Creates every primitive and buffer the session will need; run() allocates nothing of its
  // own. Throws vqm::Error.
  VitSession(std::shared_ptr<const VitModel> model, const SessionOptions &options);
  ~VitSession();
  VitSession(const VitSession &) = delete;
  VitSession &operator=(const VitSession &) = delete;

  // nchw: n images of config().input_size() floats (already preprocessed); logits: n x classes.
  void run(const float *nchw, int64_t n, float *logits, const TapFn *taps = nullptr);

  const VitModel &model() const { return *model_; }
  // "op: impl" for every distinct primitive, for VQM_VERBOSE and the bench tool.
  std::vector<std::string> kernel_report() const;

 private:
  struct Plan;
  void forward(const float *nchw, int n, float *logits, const TapFn *taps);
  Plan &plan_for(int n);

  std::shared_ptr<const VitModel> model_;
  SessionOptions options_;
  dnnl::stream stream_;
  std::vector<std::unique_ptr<Plan>> plans_;  // batch sizes: powers of two up to max_batch
  struct Buffers;
  std::unique_ptr<Buffers> buf_;
};

}  // namespace vqm
