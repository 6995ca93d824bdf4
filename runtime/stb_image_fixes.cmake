# Debian 12's libstb-dev is stb_image 2.27 (git 2022-09-08), which still has memory-safety bugs
# on hostile files that vqm's fuzzers found (docs/robustness.md). The one translation unit that
# compiles stb's implementation (runtime/stb_image_impl.cpp) includes a copy of Debian's header
# with the fixes below applied; every other file includes Debian's header for declarations only
# (the fixes change function bodies, never declarations).
#
# Each fix names the text it replaces, which must occur exactly once: a changed header (a Debian
# update, another distribution) stops the configure step instead of going silently unpatched.
# Where the fixed form is already present, the fix is skipped.

file(READ ${STB_INCLUDE_DIR}/stb_image.h VQM_STB_TEXT)

function(vqm_stb_fix what old new)
  string(FIND "${VQM_STB_TEXT}" "${new}" fixed)
  if(NOT fixed EQUAL -1)
    return()
  endif()
  string(FIND "${VQM_STB_TEXT}" "${old}" first)
  string(FIND "${VQM_STB_TEXT}" "${old}" last REVERSE)
  if(first EQUAL -1 OR NOT first EQUAL last)
    message(FATAL_ERROR "stb_image.h: cannot apply the fix '${what}': its text is not found "
                        "exactly once in ${STB_INCLUDE_DIR}/stb_image.h (see ${CMAKE_CURRENT_LIST_FILE})")
  endif()
  string(REPLACE "${old}" "${new}" patched "${VQM_STB_TEXT}")
  set(VQM_STB_TEXT "${patched}" PARENT_SCOPE)
endfunction()

# JPEG DHT segment declaring more than 256 Huffman codes: stbi__build_huffman writes past its
# 257-entry size table into the rest of the decoder state (CVE-2021-37789). Upstream 2.28 checks
# the count first; so does this fix.
vqm_stb_fix("JPEG DHT with more than 256 codes"
[=[               n += sizes[i];
            }
            L -= 17;]=]
[=[               n += sizes[i];
            }
            if(n > 256) return stbi__err("bad DHT header","Corrupt JPEG"); // vqm: CVE-2021-37789
            L -= 17;]=])

# PNG whose first IDAT chunk is empty: stbi__getn copies 0 bytes to the still-NULL data buffer
# (memcpy with a null pointer: undefined, caught by UBSan). An empty chunk has nothing to copy.
vqm_stb_fix("PNG empty first IDAT"
[=[            if (!stbi__getn(s, z->idata+ioff,c.length)) return stbi__err("outofdata","Corrupt PNG");]=]
[=[            if (c.length && !stbi__getn(s, z->idata+ioff,c.length)) return stbi__err("outofdata","Corrupt PNG"); // vqm: empty IDAT]=])

# PNG IDAT chunk whose length claims more bytes than the file holds: stb grows its buffer to
# the claimed length (up to 2 GB for a 60-byte file) before finding the data missing. vqm always
# decodes from memory (s->io.read is NULL), where the bytes left are known, so the claim is
# checked first.
vqm_stb_fix("PNG IDAT longer than the file"
[=[            if ((int)(ioff + c.length) < (int)ioff) return 0;]=]
[=[            if ((int)(ioff + c.length) < (int)ioff) return 0;
            if (!s->io.read && c.length > (stbi__uint32)(s->img_buffer_end - s->img_buffer)) return stbi__err("outofdata","Corrupt PNG"); // vqm: before allocating]=])

# JPEG scan coded with a Huffman table that no DHT segment defined: the table is all zeros, the
# maxcode[17] sentinel that ends stbi__jpeg_huff_decode's search is missing, and the search reads
# past maxcode[] (UBSan: index 18 out of bounds). The search stops at 17, where a valid table's
# sentinel would have stopped it, and k == 17 is already the "code not found" error.
vqm_stb_fix("JPEG scan with an undefined Huffman table"
[=[   for (k=FAST_BITS+1 ; ; ++k)
      if (temp < h->maxcode[k])]=]
[=[   for (k=FAST_BITS+1 ; k < 17 ; ++k) // vqm: bounded, an undefined table has no sentinel
      if (temp < h->maxcode[k])]=])

# The same undefined table, further on: the symbol index computed from its garbage delta[] reads
# size[], code[] and values[] out of bounds. Upstream 2.28 returns "not found" for an index
# outside [0, 256); so does this fix. The decoder state is also zeroed when it is allocated, so
# an undefined table is all zeros instead of leftover heap bytes and decoding is deterministic.
vqm_stb_fix("JPEG Huffman symbol index out of bounds"
[=[   c = ((j->code_buffer >> (32 - k)) & stbi__bmask[k]) + h->delta[k];
   STBI_ASSERT(]=]
[=[   c = ((j->code_buffer >> (32 - k)) & stbi__bmask[k]) + h->delta[k];
   if (c < 0 || c >= 256) return -1; // vqm: symbol index out of bounds (upstream 2.28)
   STBI_ASSERT(]=])
vqm_stb_fix("JPEG decoder state zeroed"
[=[   if (!j) return stbi__errpuc("outofmem", "Out of memory");
   STBI_NOTUSED(ri);]=]
[=[   if (!j) return stbi__errpuc("outofmem", "Out of memory");
   memset(j, 0, sizeof(stbi__jpeg)); // vqm: undefined Huffman tables read as zeros
   STBI_NOTUSED(ri);]=])

# JPEG entropy-coded data that ends (or hits a marker) in the middle of a code: the bit readers
# take more bits than the buffer holds, code_bits goes negative and the next refill shifts by
# more than 31 (UBSan: shift exponent 34). Upstream 2.28 returns zeros once the bits run out;
# so do these fixes (the decoded block is garbage, as for any corrupt scan, but defined).
vqm_stb_fix("JPEG extend_receive past the end of the bits"
[=[   if (j->code_bits < n) stbi__grow_buffer_unsafe(j);

   sgn = j->code_buffer >> 31;]=]
[=[   if (j->code_bits < n) stbi__grow_buffer_unsafe(j);
   if (j->code_bits < n) return 0; // vqm: out of bits (upstream 2.28)

   sgn = j->code_buffer >> 31;]=])
vqm_stb_fix("JPEG get_bits past the end of the bits"
[=[   if (j->code_bits < n) stbi__grow_buffer_unsafe(j);
   k = stbi_lrot(j->code_buffer, n);]=]
[=[   if (j->code_bits < n) stbi__grow_buffer_unsafe(j);
   if (j->code_bits < n) return 0; // vqm: out of bits (upstream 2.28)
   k = stbi_lrot(j->code_buffer, n);]=])
vqm_stb_fix("JPEG get_bit past the end of the bits"
[=[   if (j->code_bits < 1) stbi__grow_buffer_unsafe(j);
   k = j->code_buffer;]=]
[=[   if (j->code_bits < 1) stbi__grow_buffer_unsafe(j);
   if (j->code_bits < 1) return 0; // vqm: out of bits (upstream 2.28)
   k = j->code_buffer;]=])

# Written through configure_file so an unchanged result does not rebuild the decoder.
set(VQM_STB_FIXED_DIR ${CMAKE_BINARY_DIR}/generated/stb_fixed)
file(WRITE ${VQM_STB_FIXED_DIR}/stb_image_fixed.h.tmp "${VQM_STB_TEXT}")
configure_file(${VQM_STB_FIXED_DIR}/stb_image_fixed.h.tmp ${VQM_STB_FIXED_DIR}/stb_image_fixed.h
  COPYONLY)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${STB_INCLUDE_DIR}/stb_image.h
  ${CMAKE_CURRENT_LIST_FILE})
