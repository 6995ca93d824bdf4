# The layers of vqm as build targets (docs/architecture.md). A layer's sources include their own
# and lower layers' headers by their path from the source root ("runtime/io/format.h"), but the
# source root itself is on no include path: each layer's include root is a folder in the build
# tree that holds links to that layer's own source folders only. A target sees its own root and
# those of the layers it links, so an include of a higher layer's header is "No such file" at
# compile time (tests/layers checks it).

set(VQM_LAYER_ROOTS ${CMAKE_BINARY_DIR}/layers)

# vqm_layer(TARGET FOLDER...): gives TARGET an include root exposing the source FOLDERs (paths
# from the source root; they must not overlap another layer's).
function(vqm_layer target)
  set(root ${VQM_LAYER_ROOTS}/${target})
  foreach(folder ${ARGN})
    get_filename_component(parent ${root}/${folder} DIRECTORY)
    file(MAKE_DIRECTORY ${parent})
    file(CREATE_LINK ${CMAKE_SOURCE_DIR}/${folder} ${root}/${folder} SYMBOLIC)
  endforeach()
  target_include_directories(${target} PUBLIC $<BUILD_INTERFACE:${root}>)
endfunction()
