// Image decode and eval preprocessing. The resampler is a re-implementation of Pillow 9.x
// libImaging/Resample.c (ImagingResample with 8-bit fixed-point coefficients) because the
// reference pixel values come from timm/torchvision running on PIL, and a "close enough" bicubic
// moves logits more than quantization does; bit-exact uint8 output is the goal. Its float mode
// (the same coefficients in double) resamples position-embedding grids (resample_grid_f32).
#include "image.h"

#include "stb/stb_image.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "error.h"

namespace vqm {

namespace {

std::string dims_str(uint64_t w, uint64_t h) {
  return std::to_string(w) + "x" + std::to_string(h);
}

// The size check runs on the *declared* size before stb allocates anything, so a 20-byte PNG
// header claiming 100000x100000 costs nothing.
void check_declared_size(uint64_t w, uint64_t h, const Limits &limits, const std::string &what) {
  if (w == 0 || h == 0)
    fail(ErrorCode::limit,
         "image " + what + " declares a zero-sized image (" + dims_str(w, h) + ")");
  if (w > limits.max_image_side || h > limits.max_image_side)
    fail(ErrorCode::limit, "image " + what + " is " + dims_str(w, h) + ", over max_image_side " +
                               std::to_string(limits.max_image_side));
  if (w * h > limits.max_image_pixels)
    fail(ErrorCode::limit, "image " + what + " is " + dims_str(w, h) + " = " +
                               std::to_string(w * h) + " pixels, over max_image_pixels " +
                               std::to_string(limits.max_image_pixels));
}

uint32_t read_be32(const uint8_t *p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// stbi_info refuses PNGs whose IHDR is 0-pixel or huge ("too large") without telling us the
// numbers; reading the IHDR ourselves lets those be reported as limit errors with the sizes.
bool png_declared_size(const uint8_t *p, size_t n, uint32_t *w, uint32_t *h) {
  static const uint8_t kSig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  if (n < 24 || std::memcmp(p, kSig, 8) != 0 || std::memcmp(p + 12, "IHDR", 4) != 0) return false;
  *w = read_be32(p + 16);
  *h = read_be32(p + 20);
  return true;
}

std::string stb_reason() {
  const char *r = stbi_failure_reason();
  return r ? r : "unknown stb_image error";
}

struct StbFree {
  void operator()(stbi_uc *p) const { stbi_image_free(p); }
};

// PIL's convert("L"): ITU-R 601-2 luma in 16-bit fixed point with rounding (Convert.c L24).
inline uint8_t pil_luma(uint32_t r, uint32_t g, uint32_t b) {
  return static_cast<uint8_t>((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
}

std::vector<uint8_t> read_file(const std::string &path, const Limits &limits) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) fail(ErrorCode::io, "cannot open image '" + path + "': no such file");
  if (fs::is_directory(st)) fail(ErrorCode::io, "cannot read image '" + path + "': is a directory");
  // A FIFO would block the open below until a writer appears, a device would never end.
  if (!fs::is_regular_file(st))
    fail(ErrorCode::io, "cannot read image '" + path + "': not a regular file");
  std::ifstream f(path, std::ios::binary);
  if (!f)
    fail(ErrorCode::io, "cannot open image '" + path + "': " + std::string(std::strerror(errno)));
  f.seekg(0, std::ios::end);
  const std::streamoff end = f.tellg();
  if (end < 0) fail(ErrorCode::io, "cannot determine the size of image '" + path + "'");
  if (static_cast<uint64_t>(end) > limits.max_file_bytes)
    fail(ErrorCode::limit, "image '" + path + "' is " + std::to_string(end) +
                               " bytes, over max_file_bytes " +
                               std::to_string(limits.max_file_bytes));
  f.seekg(0, std::ios::beg);
  std::vector<uint8_t> bytes(static_cast<size_t>(end));
  if (!bytes.empty() && !f.read(reinterpret_cast<char *>(bytes.data()), end))
    fail(ErrorCode::io, "short read on image '" + path + "'");
  return bytes;
}

// ---- PIL resampling -------------------------------------------------------------------------

struct Filter {
  double (*fn)(double);
  double support;
};

// Same expressions (and evaluation order) as Resample.c so the double coefficients, and hence
// their 22-bit fixed-point roundings, come out identical. That also assumes no FMA contraction,
// true for the x86-64 baseline this file is built for (and for Pillow's own wheels).
double bilinear_filter(double x) {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

double bicubic_filter(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

constexpr int kPrecisionBits = 32 - 8 - 2;

// PIL's precompute_coeffs: for each output index, the first source index and the number of taps
// (bounds), and that many weights normalised to sum 1 (k, out_size * ksize doubles, zero past
// the taps). Both paths start from these: the float one uses them as they are (PIL's mode "F",
// like torch's antialiased interpolate), the 8-bit one rounds them to fixed point first.
struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;  // per output index: first source index, number of taps
  std::vector<double> k;
};

// in0/in1 are floats in PIL (the box is float[4]).
Coeffs precompute_coeffs(int in_size, float in0, float in1, int out_size, const Filter &filter) {
  double scale = static_cast<double>(in1 - in0) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = filter.support * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<size_t>(out_size) * 2);
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0.0);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    // (int) truncates toward zero like the C cast in PIL; negatives are clamped right after.
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double *k = &c.k[static_cast<size_t>(xx) * c.ksize];
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      k[x] = filter.fn((x + xmin - center + 0.5) * ss);
      ww += k[x];
    }
    for (int x = 0; x < xmax; ++x)
      if (ww != 0.0) k[x] /= ww;
    c.bounds[xx * 2] = xmin;
    c.bounds[xx * 2 + 1] = xmax;
  }
  return c;
}

// The same coefficients in fixed point (normalize_coeffs_8bpc), for the 8-bit passes.
struct FixedCoeffs {
  int ksize = 0;
  std::vector<int> bounds;
  std::vector<int32_t> k;
};

FixedCoeffs normalize_coeffs_8bpc(const Coeffs &c) {
  FixedCoeffs f;
  f.ksize = c.ksize;
  f.bounds = c.bounds;
  f.k.resize(c.k.size());
  for (size_t i = 0; i < c.k.size(); ++i) {
    const double v = c.k[i];
    f.k[i] = v < 0 ? static_cast<int32_t>(-0.5 + v * (1 << kPrecisionBits))
                   : static_cast<int32_t>(0.5 + v * (1 << kPrecisionBits));
  }
  return f;
}

// PIL's clip8: start from half a unit (rounding), shift the fixed point away, clamp to 0..255.
// Accumulating in 64 bits gives the same sums as PIL's int (which cannot overflow for 8-bit
// input) without relying on that argument.
inline uint8_t clip8(int64_t ss) {
  const int64_t v = ss >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Horizontal pass over source rows [y0, y0 + rows).
Image resample_horizontal(const Image &in, int y0, int rows, int out_w, const FixedCoeffs &c) {
  const int ch = in.channels;
  Image out;
  out.width = out_w;
  out.height = rows;
  out.channels = ch;
  out.pixels.resize(static_cast<size_t>(out_w) * rows * ch);
  for (int yy = 0; yy < rows; ++yy) {
    const uint8_t *src = &in.pixels[static_cast<size_t>(yy + y0) * in.width * ch];
    uint8_t *dst = &out.pixels[static_cast<size_t>(yy) * out_w * ch];
    for (int xx = 0; xx < out_w; ++xx) {
      const int xmin = c.bounds[xx * 2], xmax = c.bounds[xx * 2 + 1];
      const int32_t *k = &c.k[static_cast<size_t>(xx) * c.ksize];
      for (int b = 0; b < ch; ++b) {
        int64_t ss = int64_t{1} << (kPrecisionBits - 1);
        for (int x = 0; x < xmax; ++x) ss += int64_t{src[(x + xmin) * ch + b]} * k[x];
        dst[xx * ch + b] = clip8(ss);
      }
    }
  }
  return out;
}

Image resample_vertical(const Image &in, int out_h, const FixedCoeffs &c) {
  const int ch = in.channels;
  const size_t row = static_cast<size_t>(in.width) * ch;
  Image out;
  out.width = in.width;
  out.height = out_h;
  out.channels = ch;
  out.pixels.resize(row * out_h);
  std::vector<int64_t> acc(row);
  for (int yy = 0; yy < out_h; ++yy) {
    const int ymin = c.bounds[yy * 2], ymax = c.bounds[yy * 2 + 1];
    const int32_t *k = &c.k[static_cast<size_t>(yy) * c.ksize];
    // Row-wise accumulation: same sum as PIL's per-pixel loop (integer adds are associative).
    std::fill(acc.begin(), acc.end(), int64_t{1} << (kPrecisionBits - 1));
    for (int y = 0; y < ymax; ++y) {
      const uint8_t *src = &in.pixels[static_cast<size_t>(y + ymin) * row];
      const int64_t ky = k[y];
      for (size_t i = 0; i < row; ++i) acc[i] += int64_t{src[i]} * ky;
    }
    uint8_t *dst = &out.pixels[static_cast<size_t>(yy) * row];
    for (size_t i = 0; i < row; ++i) dst[i] = clip8(acc[i]);
  }
  return out;
}

// ImagingResampleInner for the full-image box (0, 0, w, h): horizontal pass first, restricted
// to the source rows the vertical pass will read; each pass skipped when its size is unchanged.
Image resample_pil(const Image &in, int xsize, int ysize, const Filter &filter) {
  const bool need_h = xsize != in.width;
  const bool need_v = ysize != in.height;
  FixedCoeffs vert = normalize_coeffs_8bpc(
      precompute_coeffs(in.height, 0.0f, static_cast<float>(in.height), ysize, filter));
  const int ybox_first = vert.bounds[0];
  const int ybox_last = vert.bounds[ysize * 2 - 2] + vert.bounds[ysize * 2 - 1];
  Image tmp;
  const Image *cur = &in;
  if (need_h) {
    const FixedCoeffs horiz = normalize_coeffs_8bpc(
        precompute_coeffs(in.width, 0.0f, static_cast<float>(in.width), xsize, filter));
    for (int i = 0; i < ysize; ++i) vert.bounds[i * 2] -= ybox_first;
    tmp = resample_horizontal(in, ybox_first, ybox_last - ybox_first, xsize, horiz);
    cur = &tmp;
  }
  if (need_v) return resample_vertical(*cur, ysize, vert);
  return need_h ? std::move(tmp) : in;
}

// ImagingScaleAffine's source index for each output index along one axis: the coordinate
// accumulated in double, truncated (COORD).
std::vector<int> nearest_sources(int in_size, int out_size) {
  const double a = static_cast<double>(in_size) / out_size;
  std::vector<int> src(out_size);
  double o = a * 0.5;
  for (int i = 0; i < out_size; ++i, o += a) src[i] = std::min(static_cast<int>(o), in_size - 1);
  return src;
}

Image resample_nearest(const Image &in, int xsize, int ysize) {
  const int ch = in.channels;
  const std::vector<int> xin = nearest_sources(in.width, xsize);
  const std::vector<int> ysrc = nearest_sources(in.height, ysize);
  Image out;
  out.width = xsize;
  out.height = ysize;
  out.channels = ch;
  out.pixels.resize(static_cast<size_t>(xsize) * ysize * ch);
  for (int y = 0; y < ysize; ++y) {
    const int yin = ysrc[y];
    const uint8_t *src = &in.pixels[static_cast<size_t>(yin) * in.width * ch];
    uint8_t *dst = &out.pixels[static_cast<size_t>(y) * xsize * ch];
    for (int x = 0; x < xsize; ++x)
      for (int b = 0; b < ch; ++b) dst[x * ch + b] = src[xin[x] * ch + b];
  }
  return out;
}

// One separable pass of PIL's mode "F" resampling (ImagingResampleHorizontal_32bpc and
// Vertical_32bpc): `in` is [outer, in_n, inner] and becomes [outer, out_n, inner], each output
// the sum, in double and in tap order, of its taps times the double weights, stored as float (as
// PIL's float image between its two passes, and torch's separable kernel between its own).
std::vector<float> resample_axis_f32(const std::vector<float> &in, size_t outer, int in_n,
                                     size_t inner, int out_n, const Coeffs &c) {
  std::vector<float> out(outer * out_n * inner);
  std::vector<double> acc(inner);
  for (size_t o = 0; o < outer; ++o) {
    for (int j = 0; j < out_n; ++j) {
      const int first = c.bounds[j * 2], taps = c.bounds[j * 2 + 1];
      const double *k = &c.k[static_cast<size_t>(j) * c.ksize];
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int t = 0; t < taps; ++t) {
        const float *src = &in[(o * in_n + first + t) * inner];
        for (size_t i = 0; i < inner; ++i) acc[i] += src[i] * k[t];
      }
      float *dst = &out[(o * out_n + j) * inner];
      for (size_t i = 0; i < inner; ++i) dst[i] = static_cast<float>(acc[i]);
    }
  }
  return out;
}

Filter pil_filter(Interpolation interp) {
  return interp == Interpolation::bilinear ? Filter{bilinear_filter, 1.0}
                                           : Filter{bicubic_filter, 2.0};
}

void check_image(const Image &img, const char *fn) {
  if (img.width <= 0 || img.height <= 0 || img.channels < 1 || img.channels > 4 ||
      img.pixels.size() != static_cast<size_t>(img.width) * img.height * img.channels)
    fail(ErrorCode::invalid_argument, std::string(fn) + ": inconsistent image " +
                                          dims_str(img.width, img.height) + "x" +
                                          std::to_string(img.channels) + " with " +
                                          std::to_string(img.pixels.size()) + " bytes");
}

void check_output_size(int64_t w, int64_t h, const char *fn) {
  const Limits &limits = default_limits();
  if (w <= 0 || h <= 0)
    fail(ErrorCode::invalid_argument, std::string(fn) + ": output size " + std::to_string(w) + "x" +
                                          std::to_string(h) + " must be positive");
  if (static_cast<uint64_t>(w) > limits.max_image_side ||
      static_cast<uint64_t>(h) > limits.max_image_side ||
      static_cast<uint64_t>(w) * static_cast<uint64_t>(h) > limits.max_image_pixels)
    fail(ErrorCode::limit, std::string(fn) + ": output size " + std::to_string(w) + "x" +
                               std::to_string(h) + " exceeds max_image_side " +
                               std::to_string(limits.max_image_side) + " / max_image_pixels " +
                               std::to_string(limits.max_image_pixels));
}

}  // namespace

Image decode_image_file(const std::string &path, int channels, const Limits &limits) {
  const std::vector<uint8_t> bytes = read_file(path, limits);
  return decode_image_memory(bytes.data(), bytes.size(), channels, limits, "'" + path + "'");
}

Image decode_image_memory(const void *data, size_t size, int channels, const Limits &limits,
                          const std::string &what) {
  if (channels != 1 && channels != 3)
    fail(ErrorCode::invalid_argument,
         "decode_image: channels must be 1 or 3, got " + std::to_string(channels));
  if (size == 0) fail(ErrorCode::format, "image " + what + " is empty (0 bytes)");
  if (data == nullptr) fail(ErrorCode::invalid_argument, "decode_image: data is NULL");
  if (size > static_cast<size_t>(INT_MAX))  // stb takes an int length
    fail(ErrorCode::limit, "image " + what + " is " + std::to_string(size) +
                               " bytes, over the decoder's 2 GiB input limit");
  const auto *bytes = static_cast<const stbi_uc *>(data);
  const int len = static_cast<int>(size);

  int w = 0, h = 0, n = 0;
  if (!stbi_info_from_memory(bytes, len, &w, &h, &n)) {
    uint32_t pw = 0, ph = 0;
    if (png_declared_size(bytes, size, &pw, &ph)) check_declared_size(pw, ph, limits, what);
    fail(ErrorCode::format, "cannot decode image " + what + ": " + stb_reason());
  }
  check_declared_size(static_cast<uint64_t>(w), static_cast<uint64_t>(h), limits, what);

  // 8-bit API: stb narrows 16-bit PNGs to their high byte, which is what PIL does for 16-bit
  // RGB(A) PNGs (rawmode "RGB;16B"). PIL opens 16-bit *grayscale* as mode I;16 and its
  // convert() then saturates values above 255, which throws the image away; the high byte is the
  // sensible reading of such a file, so vqm deliberately differs there.
  // Native channel count (0): the RGB->L conversion must be PIL's, not stb's own luma.
  int dw = 0, dh = 0, dn = 0;
  std::unique_ptr<stbi_uc, StbFree> px(stbi_load_from_memory(bytes, len, &dw, &dh, &dn, 0));
  if (!px) {
    const std::string reason = stb_reason();
    if (reason == "outofmem")
      fail(ErrorCode::out_of_memory, "out of memory decoding image " + what);
    fail(ErrorCode::format, "cannot decode image " + what + ": " + reason);
  }
  if (dw != w || dh != h || dn < 1 || dn > 4)
    fail(ErrorCode::format, "image " + what + " decoded as " + dims_str(dw, dh) + "x" +
                                std::to_string(dn) + " but declared " + dims_str(w, h));

  Image img;
  img.width = w;
  img.height = h;
  img.channels = channels;
  const size_t count = static_cast<size_t>(w) * h;
  img.pixels.resize(count * channels);
  const stbi_uc *s = px.get();
  uint8_t *d = img.pixels.data();
  if (channels == 3) {
    // Gray (+alpha) replicates; alpha is dropped without compositing, as PIL's convert("RGB").
    for (size_t i = 0; i < count; ++i, s += dn, d += 3) {
      if (dn >= 3) {
        d[0] = s[0], d[1] = s[1], d[2] = s[2];
      } else {
        d[0] = d[1] = d[2] = s[0];
      }
    }
  } else {
    for (size_t i = 0; i < count; ++i, s += dn) d[i] = dn >= 3 ? pil_luma(s[0], s[1], s[2]) : s[0];
  }
  return img;
}

bool interpolation_from_name(const std::string &name, Interpolation *out) {
  Interpolation v;
  if (name == "bicubic") {
    v = Interpolation::bicubic;
  } else if (name == "bilinear") {
    v = Interpolation::bilinear;
  } else if (name == "nearest") {
    v = Interpolation::nearest;
  } else {
    return false;
  }
  if (out) *out = v;
  return true;
}

const char *interpolation_name(Interpolation i) {
  switch (i) {
    case Interpolation::bicubic:
      return "bicubic";
    case Interpolation::bilinear:
      return "bilinear";
    case Interpolation::nearest:
      return "nearest";
  }
  return "unknown";
}

bool resize_mode_from_name(const std::string &name, ResizeMode *out) {
  if (name == "shorter_side") {
    *out = ResizeMode::shorter_side;
  } else if (name == "squash") {
    *out = ResizeMode::squash;
  } else {
    return false;
  }
  return true;
}

bool crop_offset_from_name(const std::string &name, CropOffset *out) {
  if (name == "round_half_even") {
    *out = CropOffset::round_half_even;
  } else if (name == "floor") {
    *out = CropOffset::floor;
  } else {
    return false;
  }
  return true;
}

const char *crop_offset_name(CropOffset c) {
  return c == CropOffset::floor ? "floor" : "round_half_even";
}

const char *resize_mode_name(ResizeMode m) {
  return m == ResizeMode::squash ? "squash" : "shorter_side";
}

Image resize_image(const Image &src, int out_width, int out_height, Interpolation interp) {
  check_image(src, "resize_image");
  check_output_size(out_width, out_height, "resize_image");
  // PIL's Image.resize returns a copy when the size is unchanged (no filter is applied).
  if (out_width == src.width && out_height == src.height) return src;
  switch (interp) {
    case Interpolation::bicubic:
    case Interpolation::bilinear:
      return resample_pil(src, out_width, out_height, pil_filter(interp));
    case Interpolation::nearest:
      return resample_nearest(src, out_width, out_height);
  }
  fail(ErrorCode::invalid_argument, "resize_image: unknown interpolation");
}

std::vector<float> resample_grid_f32(const std::vector<float> &in, int channels, int in_h, int in_w,
                                     int out_h, int out_w, Interpolation interp) {
  const char *fn = "resample_grid_f32";
  if (channels < 1 || in_h < 1 || in_w < 1 ||
      in.size() != static_cast<uint64_t>(in_h) * static_cast<uint64_t>(in_w) * channels)
    fail(ErrorCode::invalid_argument, std::string(fn) + ": " + std::to_string(in.size()) +
                                          " values for a " + dims_str(in_w, in_h) + " grid of " +
                                          std::to_string(channels) + " channels");
  check_output_size(out_w, out_h, fn);
  if (out_h == in_h && out_w == in_w) return in;  // as PIL: no pass when a size is unchanged
  const size_t ch = static_cast<size_t>(channels);
  if (interp == Interpolation::nearest) {
    const std::vector<int> xs = nearest_sources(in_w, out_w), ys = nearest_sources(in_h, out_h);
    std::vector<float> out(static_cast<size_t>(out_h) * out_w * ch);
    for (int y = 0; y < out_h; ++y)
      for (int x = 0; x < out_w; ++x)
        std::copy_n(&in[(static_cast<size_t>(ys[y]) * in_w + xs[x]) * ch], ch,
                    &out[(static_cast<size_t>(y) * out_w + x) * ch]);
    return out;
  }
  const Filter filter = pil_filter(interp);
  std::vector<float> cur;
  const std::vector<float> *src = &in;
  if (out_w != in_w) {  // horizontal first, as PIL and torch
    cur = resample_axis_f32(in, in_h, in_w, ch, out_w,
                            precompute_coeffs(in_w, 0.0f, static_cast<float>(in_w), out_w, filter));
    src = &cur;
  }
  if (out_h != in_h)
    return resample_axis_f32(
        *src, 1, in_h, static_cast<size_t>(out_w) * ch, out_h,
        precompute_coeffs(in_h, 0.0f, static_cast<float>(in_h), out_h, filter));
  return cur;
}

void preprocess_image(const Image &img, const PreprocessConfig &cfg, float *chw_out) {
  check_image(img, "preprocess_image");
  const int ch = cfg.channels;
  if (chw_out == nullptr) fail(ErrorCode::invalid_argument, "preprocess_image: output is NULL");
  if (img.channels != ch)
    fail(ErrorCode::invalid_argument, "preprocess_image: image has " +
                                          std::to_string(img.channels) +
                                          " channels, config wants " + std::to_string(ch));
  if (cfg.mean.size() != static_cast<size_t>(ch) || cfg.std.size() != static_cast<size_t>(ch))
    fail(ErrorCode::invalid_argument,
         "preprocess_image: need " + std::to_string(ch) + " mean and std values, got " +
             std::to_string(cfg.mean.size()) + " and " + std::to_string(cfg.std.size()));
  for (float s : cfg.std)
    if (!(s != 0.0f) || !std::isfinite(s))
      fail(ErrorCode::invalid_argument, "preprocess_image: std values must be finite, non-zero");
  if (cfg.resize <= 0 || cfg.crop <= 0)
    fail(ErrorCode::invalid_argument, "preprocess_image: resize " + std::to_string(cfg.resize) +
                                          " and crop " + std::to_string(cfg.crop) +
                                          " must be positive");
  check_output_size(cfg.crop, cfg.crop, "preprocess_image crop");

  // torchvision Resize(int): shorter side -> resize, longer side int(resize * long / short).
  // Python's `resize * long / short` is an exact integer product then one correctly rounded
  // division, which the double expression below reproduces. Squash: Resize((resize, resize)).
  const bool w_short = img.width <= img.height;
  const int64_t s = w_short ? img.width : img.height;
  const int64_t l = w_short ? img.height : img.width;
  const int64_t new_long = cfg.resize_mode == ResizeMode::squash
                               ? cfg.resize
                               : static_cast<int64_t>(static_cast<double>(int64_t{cfg.resize} * l) /
                                                      static_cast<double>(s));
  const int64_t ow = w_short ? cfg.resize : new_long;
  const int64_t oh = w_short ? new_long : cfg.resize;
  check_output_size(ow, oh, "preprocess_image resize");
  const Image resized =
      (ow == img.width && oh == img.height)
          ? Image{}
          : resize_image(img, static_cast<int>(ow), static_cast<int>(oh), cfg.interpolation);
  const Image &r = (ow == img.width && oh == img.height) ? img : resized;

  // The crop's first column and row in the image (negative: zero padding), see CropOffset.
  const int crop = cfg.crop;
  auto offset = [&](int size) {
    if (cfg.crop_offset == CropOffset::floor) {
      const int d = size - crop;
      return d >= 0 ? d / 2 : -((1 - d) / 2);  // Python's d // 2
    }
    // torchvision: zero-pad by the floor half, then int(round(...)), half-to-even being what
    // std::nearbyint gives under the default rounding mode.
    const int pad = crop > size ? (crop - size) / 2 : 0;
    const int padded = crop > size ? crop : size;
    return static_cast<int>(std::nearbyint((padded - crop) / 2.0)) - pad;
  };
  const int left = offset(r.width), top = offset(r.height);

  // ToTensor then Normalize, in float32 with the same operations as torch: x / 255, then
  // (x - mean) / std. A per-channel table keeps that exact and cheap.
  const size_t plane = static_cast<size_t>(crop) * crop;
  for (int c = 0; c < ch; ++c) {
    float lut[256];
    for (int v = 0; v < 256; ++v)
      lut[v] = (static_cast<float>(v) / 255.0f - cfg.mean[c]) / cfg.std[c];
    float *out = chw_out + plane * c;
    for (int y = 0; y < crop; ++y) {
      const int sy = top + y;
      for (int x = 0; x < crop; ++x) {
        const int sx = left + x;
        const bool inside = sy >= 0 && sy < r.height && sx >= 0 && sx < r.width;
        const uint8_t v = inside ? r.pixels[(static_cast<size_t>(sy) * r.width + sx) * ch + c] : 0;
        out[static_cast<size_t>(y) * crop + x] = lut[v];
      }
    }
  }
}

}  // namespace vqm
