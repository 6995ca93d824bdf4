# A quoted include that climbs out of its folder ("../quantizer/ptq.h") would reach a higher
# layer's header without any include path, past the layer check; no source may have one.
file(GLOB_RECURSE sources ${SOURCE_DIR}/kernels/* ${SOURCE_DIR}/runtime/* ${SOURCE_DIR}/models/*
  ${SOURCE_DIR}/quantizer/* ${SOURCE_DIR}/apps/*)
set(found "")
foreach(f ${sources})
  file(STRINGS ${f} lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"\\.\\./")
  if(lines)
    list(APPEND found "${f}: ${lines}")
  endif()
endforeach()
if(found)
  message(FATAL_ERROR "includes through '..' (name the header from the source root):\n${found}")
endif()
message(STATUS "no include climbs out of its folder (${CMAKE_CURRENT_LIST_FILE})")
