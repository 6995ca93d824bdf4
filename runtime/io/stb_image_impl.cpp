// The one translation unit that compiles stb_image's implementation: the vendored header in
// third_party/stb (2.27 with the safety fixes its README lists). image.cpp includes the same
// header for declarations only.
//
// Format selection: JPEG, PNG and BMP are kept. TGA has no magic, so stb's TGA probe accepts
// many random byte strings as "an image"; PSD/PIC/HDR are not inputs a vision runtime needs and
// stb's parsers for them are the least exercised. GIF and PNM went too (docs/robustness.md): the
// fuzzer found a signed overflow in the PNM header parser within minutes, and stb's GIF decoder
// has published heap overflows that 2.27 does not fix (CVE-2023-45661, -45663, -45664); every
// decoder compiled in is attack surface for files from strangers. Turning them off makes
// "not an image" a clean format error ("unknown image type").
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_TGA
#define STBI_NO_PSD
#define STBI_NO_PIC
#define STBI_NO_HDR
#define STBI_NO_GIF
#define STBI_NO_PNM
// stb's own hard ceiling, a second line of defence behind vqm::Limits (checked before decoding).
// Kept at stb's default so a caller who raises Limits::max_image_side is not silently capped.
#define STBI_MAX_DIMENSIONS (1 << 24)
// STBI_FAILURE_USERMSG is deliberately not defined: its "user" strings are vaguer ("Corrupt
// PNG" even for a gzip'd idx file); the short technical reasons ("bad huffman code",
// "unknown image type") are more useful inside vqm::Error messages that already name the file.

// The header is found through a SYSTEM include path, which already hides most of its warnings;
// these make the file warning-free under -Wall -Wextra -Werror even without that.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wconversion"
#include "stb/stb_image.h"
#pragma GCC diagnostic pop

#include "inflate.h"

namespace vqm {

// stbi_zlib_decode_noheader_buffer plus the consumed-input count its public API lacks (stb's
// internal decoder state is visible in this translation unit only).
int inflate_raw(const uint8_t *in, int in_len, uint8_t *out, int out_len, int *consumed,
                const char **reason) {
  stbi__zbuf z;
  z.zbuffer = const_cast<stbi_uc *>(in);
  z.zbuffer_end = z.zbuffer + in_len;
  if (!stbi__do_zlib(&z, reinterpret_cast<char *>(out), out_len, 0, 0)) {
    *reason = stbi_failure_reason();
    return -1;
  }
  // The bit reader runs up to 4 bytes ahead; whole unused bytes sit in num_bits. At the very
  // end of the input stb shifts in zero bytes without advancing, so those are not counted back.
  const int read = static_cast<int>(z.zbuffer - in);
  *consumed = read < in_len ? read - z.num_bits / 8 : in_len;
  return static_cast<int>(z.zout - z.zout_start);
}

}  // namespace vqm
