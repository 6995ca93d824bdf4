// Reader for PyTorch state dicts saved with torch.save(state_dict, path) (the zip format of
// torch >= 1.6): a zip of stored entries, <archive>/data.pkl (a pickle of the dict, each tensor
// a call of torch._utils._rebuild_tensor_v2 on a storage) and <archive>/data/<key> (each
// storage's raw little-endian bytes). Nothing in the file is executed: the pickle runs on a
// restricted machine that knows a handful of torch globals by name and refuses every other one
// (runtime/pth_pickle.h). Every offset and size is validated before use; errors name the entry
// or tensor.
#pragma once
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "limits.h"
#include "tensor.h"

namespace vqm {

class PthFile {
 public:
  // Reads and validates the whole file. Throws vqm::Error (io / format / limit / unsupported).
  // Limits: max_json_bytes bounds data.pkl (the pickle is the header of a .pth); the others as
  // for safetensors.
  static PthFile from_file(const std::string &path, const Limits &limits = default_limits());
  // Copies `size` bytes; `what` names the buffer in error messages.
  static PthFile from_memory(const void *data, size_t size, const Limits &limits = default_limits(),
                             const std::string &what = "<memory>");

  // Tensors in state-dict order (the order torch.save wrote the dict, which is the order
  // torch.load gives its keys). Supported dtypes: torch's float32, float16, bfloat16, int32,
  // int64, int8, uint8; anything else is an `unsupported` error naming the tensor. `offset` is
  // the data's offset in the file. Tensors that share a storage (views such as slices of one
  // parameter) share bytes; only contiguous tensors are read.
  const std::vector<TensorInfo> &tensors() const { return tensors_; }
  const TensorInfo *find(const std::string &name) const;  // nullptr if absent; O(1)
  // Throws vqm::Error(format) "missing tensor 'x' in <path>" if absent.
  const TensorInfo &get(const std::string &name) const;
  const std::string &source() const { return source_; }
  // The top folder of the archive (torch names it after the file: "archive", "model", ...) and
  // the key the state dict was found under ("" at the top; "model", "state_dict" or
  // "model_state" for a checkpoint dict that holds one).
  const std::string &archive_name() const { return archive_name_; }
  const std::string &state_dict_key() const { return state_dict_key_; }

 private:
  void set_tensors(std::vector<TensorInfo> tensors);

  std::string source_;
  std::string archive_name_;
  std::string state_dict_key_;
  std::shared_ptr<std::vector<uint8_t>> bytes_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in tensors_ (unique names)
};

}  // namespace vqm
