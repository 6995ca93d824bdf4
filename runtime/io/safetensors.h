// Reader for safetensors files (timm checkpoints): 8-byte LE header length, JSON header
// ({name: {dtype, shape, data_offsets}}, optional "__metadata__" of strings), raw LE data.
// Trusts nothing: every offset and size is validated before use, errors name the tensor.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "limits.h"
#include "tensor.h"

namespace vqm {

class SafetensorsFile {
 public:
  // Reads and validates the whole file. Throws vqm::Error (io / format / limit / unsupported).
  static SafetensorsFile from_file(const std::string &path,
                                   const Limits &limits = default_limits());
  // Copies `size` bytes; `what` names the buffer in error messages.
  static SafetensorsFile from_memory(const void *data, size_t size,
                                     const Limits &limits = default_limits(),
                                     const std::string &what = "<memory>");

  // Tensors in file order (sorted by data offset). Supported dtypes: F32, F16, BF16, I32, I64,
  // I8, U8; anything else is an `unsupported` error naming the tensor.
  const std::vector<TensorInfo> &tensors() const { return tensors_; }
  const TensorInfo *find(const std::string &name) const;  // nullptr if absent
  // Throws vqm::Error(format) "missing tensor 'x' in <path>" if absent.
  const TensorInfo &get(const std::string &name) const;
  const std::map<std::string, std::string> &metadata() const { return metadata_; }
  const std::string &source() const { return source_; }

 private:
  std::string source_;
  std::shared_ptr<std::vector<uint8_t>> bytes_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace vqm
