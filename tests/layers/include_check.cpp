// Compiled with the include paths of one layer's target (tests/layers/CMakeLists.txt), this file
// includes one header: a lower layer's must compile, a higher layer's must be "No such file".
#include VQM_LAYER_CHECK_HEADER
