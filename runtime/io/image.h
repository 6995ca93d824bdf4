// Image decode (stb_image) and the eval-time preprocessing of timm/torchvision:
// resize the shorter side (PIL-style antialiased bicubic or bilinear), center crop, scale to
// [0,1], normalise with mean/std, write planar CHW float. The same resampling, in float, for
// grids of vectors (position embeddings).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "limits.h"

namespace vqm {

// 8-bit interleaved pixels, row-major HWC.
struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;  // 1 (gray) or 3 (RGB)
  std::vector<uint8_t> pixels;
};

// Decodes JPEG/PNG/BMP with stb_image (every other stb format is compiled out: stb_image_impl.cpp)
// and converts to `channels` (1 or 3) the way PIL's convert("L") / convert("RGB") does: L is
// (R*19595 + G*38470 + B*7471 + 0x8000) >> 16, gray is replicated to RGB, alpha is dropped
// without compositing. 16-bit PNGs keep the high byte of each sample (PIL does the same for
// 16-bit RGB; for 16-bit gray PIL saturates at 255, which vqm does not copy). PNGs decode
// bit-identically to PIL; JPEGs can differ by 1-2 levels in ~1% of samples (stb's IDCT/colour
// rounding vs libjpeg-turbo's). Throws vqm::Error: io (missing/unreadable file, directory),
// format (empty, not an image, truncated), limit (declared width/height 0, over max_image_side
// or max_image_pixels: checked on the header, before any pixel memory is allocated).
Image decode_image_file(const std::string &path, int channels,
                        const Limits &limits = default_limits());
Image decode_image_memory(const void *data, size_t size, int channels,
                          const Limits &limits = default_limits(),
                          const std::string &what = "<memory>");

enum class Interpolation { bicubic, bilinear, nearest };
// "bicubic" / "bilinear" / "nearest"; returns false for anything else.
bool interpolation_from_name(const std::string &name, Interpolation *out);
const char *interpolation_name(Interpolation i);

// How the image is resized before the center crop.
enum class ResizeMode {
  shorter_side,  // the shorter side to `resize`, the aspect ratio kept (torchvision Resize(int))
  // Both sides to `resize`, the aspect ratio ignored (timm's crop_mode "squash": Resize((s, s));
  // Hugging Face's size {"height", "width"}). With resize == crop there is nothing to crop.
  squash,
};
// "shorter_side" / "squash"; returns false for anything else.
bool resize_mode_from_name(const std::string &name, ResizeMode *out);
const char *resize_mode_name(ResizeMode m);

// Where the center crop starts when (size - crop) is odd. torchvision's CenterCrop (timm, and so
// most checkpoints): int(round((size - crop) / 2)), Python's half-to-even round, after zero-
// padding an image smaller than the crop by the floor half on the left/top. Hugging Face's image
// processors: (size - crop) // 2, Python's floor division, also when negative (a small image then
// lands ceil(pad / 2) from the left/top). They differ by one pixel for some sizes.
enum class CropOffset { round_half_even, floor };
// "round_half_even" / "floor"; returns false for anything else.
bool crop_offset_from_name(const std::string &name, CropOffset *out);
const char *crop_offset_name(CropOffset c);

struct PreprocessConfig {
  int channels = 3;
  int resize = 256;  // shorter side after resize (timm: int(crop / crop_pct)); squash: both sides
  int crop = 224;    // square center crop, the model's input size
  ResizeMode resize_mode = ResizeMode::shorter_side;
  Interpolation interpolation = Interpolation::bicubic;
  CropOffset crop_offset = CropOffset::round_half_even;
  std::vector<float> mean = {0.485f, 0.456f, 0.406f};  // one per channel
  std::vector<float> std = {0.229f, 0.224f, 0.225f};
};

// Resize exactly as PIL's Image.resize (with its antialiasing filter support scaled by the
// downscale factor, and PIL's rounding/clamping back to uint8 after each pass).
Image resize_image(const Image &src, int out_width, int out_height, Interpolation interp);

// Resamples a grid of float vectors (row-major [in_h, in_w, channels], e.g. a ViT's position
// embeddings) to [out_h, out_w, channels] as PIL's Image.resize does for each channel as a mode
// "F" image, which is also torch's F.interpolate(mode, antialias=True, align_corners=False):
// resize_image's filters and coefficients (support scaled by the downscale factor, centre
// (i + 0.5) * in / out), kept in double rather than rounded to resize_image's fixed point, the
// sums in double, each pass (horizontal, then vertical; skipped when its size is unchanged)
// stored as float. Nearest takes PIL's source indices. Same sizes return `in` unchanged. Throws
// vqm::Error invalid_argument when in.size() does not match, limit over max_image_side/pixels.
std::vector<float> resample_grid_f32(const std::vector<float> &in, int channels, int in_h, int in_w,
                                     int out_h, int out_w, Interpolation interp);

// Full eval transform: torchvision Resize(resize) (shorter side to `resize`, longer side
// int(resize * long / short); squash: resize x resize), CenterCrop(crop) with offsets
// int(round((size - crop) / 2)), /255, (x - mean) / std. Writes channels*crop*crop floats to
// `chw_out`.
void preprocess_image(const Image &img, const PreprocessConfig &cfg, float *chw_out);

}  // namespace vqm
