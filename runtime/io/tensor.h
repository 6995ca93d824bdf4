// Tensor metadata shared by the .vqm and safetensors readers, and dtype helpers.
// Knows nothing about ViT: a tensor is a name, a dtype, a shape and some bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vqm {

// Packed qB (B = 2..7 bits) store K (the innermost dimension) densely: see docs/vqm-format.md.
// New values go at the end: the enum's order is not part of the file format (names are).
enum class DType : uint8_t { f32, f16, bf16, i32, i64, i8, u8, q4, q6, q2, q3, q5, q7 };

const char *dtype_name(DType t);
// Parses "f32", "f16", ... (the .vqm spelling). Returns false for unknown names.
bool dtype_from_name(std::string_view name, DType *out);

// Bytes needed for a tensor of `t` (packed qB: ceil(B * K / 8) per row of K; see
// `packed_row_bytes`). Returns false on overflow.
bool dtype_nbytes(DType t, const std::vector<int64_t> &shape, uint64_t *out);

// Bytes of one packed row of `k` values (the innermost dimension) for qB; k*size otherwise.
uint64_t packed_row_bytes(DType t, uint64_t k);

// Signed integer storage: the bit width of i8 (8) and qB (B), 0 for every other dtype.
int int_dtype_bits(DType t);
// The smallest signed integer dtype for `bits` in [2, 8] (qB, or i8 for 8). Throws otherwise.
DType int_dtype_for_bits(int bits);

struct TensorInfo {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // relative to the start of the data section
  uint64_t nbytes = 0;
  const uint8_t *data = nullptr;  // points into the owning file's buffer
  int quant_axis = -1;            // .vqm only: axis the scale tensor runs along, -1 if none
  std::string scale;              // .vqm only: name of the f32 scale tensor, empty if none

  int64_t numel() const;
};

// Converts f32/f16/bf16 data to f32. Throws vqm::Error(unsupported) for other dtypes.
std::vector<float> to_f32(const TensorInfo &t);

// Unpacks `rows` rows of `k` signed integers stored as i8 (plain) or qB (see docs/vqm-format.md:
// element j is the B-bit two's complement field at bits [Bj, Bj+B) of the row's LSB-first bit
// stream; rows padded to whole bytes). Throws for other dtypes.
void unpack_int_rows(const uint8_t *packed, DType t, int64_t rows, int64_t k, int8_t *out);

float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t b);

// Overflow-checked arithmetic for size computations on untrusted numbers.
inline bool mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *out) {
  return __builtin_mul_overflow(a, b, out);
}
inline bool add_overflow_u64(uint64_t a, uint64_t b, uint64_t *out) {
  return __builtin_add_overflow(a, b, out);
}

// Human-readable shape such as "[2, 3, 224, 224]", for error messages.
std::string shape_str(const std::vector<int64_t> &shape);

}  // namespace vqm
