#include "tensor.h"

#include <cstring>

#include "error.h"

namespace vqm {

namespace {
struct DTypeRow {
  DType t;
  const char *name;
  uint32_t bits;  // bits per element; packed qB rows are padded to whole bytes
};
constexpr DTypeRow kDTypes[] = {
    {DType::f32, "f32", 32}, {DType::f16, "f16", 16}, {DType::bf16, "bf16", 16},
    {DType::i32, "i32", 32}, {DType::i64, "i64", 64}, {DType::i8, "i8", 8},
    {DType::u8, "u8", 8},    {DType::q2, "q2", 2},    {DType::q3, "q3", 3},
    {DType::q4, "q4", 4},    {DType::q5, "q5", 5},    {DType::q6, "q6", 6},
    {DType::q7, "q7", 7},
};
constexpr DType kIntByBits[] = {DType::q2, DType::q3, DType::q4, DType::q5,
                                DType::q6, DType::q7, DType::i8};
}  // namespace

const char *dtype_name(DType t) {
  for (const auto &row : kDTypes)
    if (row.t == t) return row.name;
  return "?";
}

bool dtype_from_name(std::string_view name, DType *out) {
  for (const auto &row : kDTypes) {
    if (name == row.name) {
      *out = row.t;
      return true;
    }
  }
  return false;
}

int int_dtype_bits(DType t) {
  for (int b = 2; b <= 8; ++b)
    if (kIntByBits[b - 2] == t) return b;
  return 0;
}

DType int_dtype_for_bits(int bits) {
  if (bits < 2 || bits > 8)
    fail(ErrorCode::invalid_argument,
         "integer storage needs 2 to 8 bits, got " + std::to_string(bits));
  return kIntByBits[bits - 2];
}

uint64_t packed_row_bytes(DType t, uint64_t k) {
  for (const auto &row : kDTypes)
    if (row.t == t) return (k * row.bits + 7) / 8;
  return 0;
}

bool dtype_nbytes(DType t, const std::vector<int64_t> &shape, uint64_t *out) {
  // Packed types pad each innermost row to a whole byte, so count rows and row bytes apart.
  uint64_t rows = 1;
  uint64_t k = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) return false;
    uint64_t d = static_cast<uint64_t>(shape[i]);
    if (i + 1 == shape.size()) {
      k = d;
    } else if (mul_overflow_u64(rows, d, &rows)) {
      return false;
    }
  }
  // Bound k so that k * bits cannot overflow in packed_row_bytes.
  if (k > (uint64_t{1} << 58)) return false;
  return !mul_overflow_u64(rows, packed_row_bytes(t, k), out);
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void unpack_int_rows(const uint8_t *packed, DType t, int64_t rows, int64_t k, int8_t *out) {
  const int bits = int_dtype_bits(t);
  if (bits == 0)
    fail(ErrorCode::unsupported,
         std::string("cannot unpack dtype ") + dtype_name(t) + " as integers");
  if (bits == 8) {
    std::memcpy(out, packed, static_cast<size_t>(rows * k));
    return;
  }
  const int64_t row_bytes = static_cast<int64_t>(packed_row_bytes(t, static_cast<uint64_t>(k)));
  const unsigned mask = (1u << bits) - 1, sign = 1u << (bits - 1);
#pragma omp parallel for schedule(static) if (rows * k >= (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t *src = packed + r * row_bytes;
    for (int64_t j = 0; j < k; ++j) {
      // A field of <= 8 bits spans at most two bytes; the second exists unless the field ends
      // in the row's last byte.
      const int64_t bit = j * bits, byte = bit / 8;
      unsigned word = src[byte];
      if (byte + 1 < row_bytes) word |= static_cast<unsigned>(src[byte + 1]) << 8;
      const unsigned pattern = (word >> (bit % 8)) & mask;
      out[r * k + j] =
          static_cast<int8_t>(static_cast<int>(pattern ^ sign) - static_cast<int>(sign));
    }
  }
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

float bf16_to_f32(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

std::vector<float> to_f32(const TensorInfo &t) {
  const int64_t n = t.numel();
  std::vector<float> out(static_cast<size_t>(n));
  switch (t.dtype) {
    case DType::f32:
      std::memcpy(out.data(), t.data, static_cast<size_t>(n) * 4);
      break;
    case DType::f16:
    case DType::bf16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, t.data + 2 * i, 2);  // data may be unaligned in safetensors
        out[i] = t.dtype == DType::f16 ? f16_to_f32(v) : bf16_to_f32(v);
      }
      break;
    default:
      fail(ErrorCode::unsupported, "tensor '" + t.name + "' has dtype " + dtype_name(t.dtype) +
                                       ", expected f32, f16 or bf16");
  }
  return out;
}

std::string shape_str(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace vqm
