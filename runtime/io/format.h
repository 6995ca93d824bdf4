// The .vqm container (v1): 64-byte header, JSON document, aligned tensor blobs.
// The full specification is docs/vqm-format.md; keep the two in step.
// This layer knows dtypes and byte counts, not ViT: models/ checks which tensors must exist.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "limits.h"
#include "tensor.h"

namespace vqm {

constexpr uint32_t kVqmVersion = 1;
constexpr uint32_t kVqmHeaderSize = 64;
constexpr uint32_t kVqmAlignment = 64;

class VqmFile {
 public:
  // Reads and validates. Throws vqm::Error (io / format / limit / unsupported) naming the
  // problem: the field, the tensor and the numbers involved.
  static VqmFile from_file(const std::string &path, const Limits &limits = default_limits());
  static VqmFile from_memory(const void *data, size_t size, const Limits &limits = default_limits(),
                             const std::string &what = "<memory>");

  // The JSON document without its "tensors" array: model, preprocess, labels, quantization,
  // producer, and any keys a newer writer added.
  const nlohmann::json &meta() const { return meta_; }
  const std::vector<TensorInfo> &tensors() const { return tensors_; }
  const TensorInfo *find(const std::string &name) const;  // nullptr if absent
  // Throws vqm::Error(format) naming the tensor and the file if absent.
  const TensorInfo &get(const std::string &name) const;
  // get() plus a check of dtype and exact shape; the error gives expected and found.
  const TensorInfo &get(const std::string &name, DType dtype,
                        const std::vector<int64_t> &shape) const;
  const std::string &source() const { return source_; }

 private:
  std::string source_;
  std::shared_ptr<std::vector<uint8_t>> bytes_;  // 64-byte aligned data section inside
  nlohmann::json meta_;
  std::vector<TensorInfo> tensors_;
};

// Builds a .vqm. Tensor data is copied in at add time, so callers may free their buffers.
class VqmWriter {
 public:
  // Everything but "tensors"; the writer fills that array itself.
  void set_meta(nlohmann::json meta) { meta_ = std::move(meta); }
  // `nbytes` must equal dtype_nbytes(dtype, shape). `scale`/`quant_axis` describe a quantized
  // tensor's f32 scale tensor (which must be added too). Throws on duplicate names.
  void add_tensor(const std::string &name, DType dtype, const std::vector<int64_t> &shape,
                  const void *data, uint64_t nbytes, const std::string &scale = "",
                  int quant_axis = -1);
  void add_f32(const std::string &name, const std::vector<int64_t> &shape, const float *data);

  std::vector<uint8_t> to_bytes() const;
  // Writes `path` atomically: a temporary file in the same folder, fsync, then rename. On any
  // failure the temporary is removed and an existing `path` is left untouched.
  void write(const std::string &path) const;

 private:
  struct Pending {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> data;
    std::string scale;
    int quant_axis;
  };
  nlohmann::json meta_ = nlohmann::json::object();
  std::vector<Pending> tensors_;
};

// Writes `bytes` to `path` through a temporary file in the same folder and an atomic rename.
// Shared by every tool that writes an output file.
void write_file_atomic(const std::string &path, const void *data, size_t size);

}  // namespace vqm
