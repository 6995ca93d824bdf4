// Helpers shared by the two untrusted-file readers (format.cpp, safetensors.cpp): bounded file
// loading, strict JSON parsing, shape/offset checks. Internal to runtime/; defined in format.cpp.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "limits.h"
#include "tensor.h"

namespace vqm {

namespace detail {
std::string quote_name(const std::string &name);
std::string describe_json(const nlohmann::json &j);
const uint8_t *aligned_start(const std::vector<uint8_t> &buf);
std::shared_ptr<std::vector<uint8_t>> load_memory(const void *data, size_t size,
                                                  const Limits &limits, const std::string &src);
std::shared_ptr<std::vector<uint8_t>> load_file(const std::string &path, const Limits &limits,
                                                uint64_t *size_out);
nlohmann::json parse_json(const uint8_t *p, size_t n, const std::string &src);
std::vector<int64_t> parse_shape(const nlohmann::json &j, const Limits &limits,
                                 const std::string &ctx);
uint64_t parse_u64(const nlohmann::json &j, const std::string &ctx, const std::string &what);
uint64_t checked_nbytes(DType dtype, const std::vector<int64_t> &shape, const std::string &ctx);
void check_tensor_limit(uint64_t nbytes, const Limits &limits, const std::string &ctx);
void check_no_overlap(const std::vector<TensorInfo> &tensors, const std::string &src);
}  // namespace detail

}  // namespace vqm
