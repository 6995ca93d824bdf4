// Raw deflate (RFC 1951) with the vendored stb_image's inflater (third_party/stb), so compressed
// containers (the tools' gzip'd idx files) need no other dependency.
#pragma once
#include <cstdint>

namespace vqm {

// Inflates into a fixed buffer; returns the bytes written, or -1 on corrupt data / output
// overflow (then *reason is stb's short reason, e.g. "bad huffman code"). *consumed is how many
// input bytes the stream used (input past the stream's end is only lookahead), so a container
// reader can check that the stream ends exactly where its trailer starts.
int inflate_raw(const uint8_t *in, int in_len, uint8_t *out, int out_len, int *consumed,
                const char **reason);

}  // namespace vqm
