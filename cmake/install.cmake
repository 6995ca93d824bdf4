# `cmake --install`: libvqm.so (SONAME libvqm.so.<major>) + vqm/vqm.h, the tools, a CMake package
# (find_package(vqm CONFIG) -> vqm::vqm), vqm.pc for pkg-config, and the Python binding.
# project(VERSION) is the one source of every version below and of vqm_version().
include(CMakePackageConfigHelpers)

set(VQM_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/vqm)
install(TARGETS vqm EXPORT vqmTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${CMAKE_SOURCE_DIR}/runtime/include/vqm/vqm.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/vqm)
install(TARGETS ${VQM_TOOLS} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

install(EXPORT vqmTargets NAMESPACE vqm:: DESTINATION ${VQM_CMAKE_DIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/vqmConfig.cmake.in
  ${CMAKE_BINARY_DIR}/generated/vqmConfig.cmake INSTALL_DESTINATION ${VQM_CMAKE_DIR})
# Same major version = same SONAME = same ABI.
write_basic_package_version_file(${CMAKE_BINARY_DIR}/generated/vqmConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_BINARY_DIR}/generated/vqmConfig.cmake
  ${CMAKE_BINARY_DIR}/generated/vqmConfigVersion.cmake DESTINATION ${VQM_CMAKE_DIR})

# vqm.pc locates the prefix from its own folder (${pcfiledir}), so `cmake --install --prefix P`
# works whatever prefix was configured, and the tree stays relocatable.
file(RELATIVE_PATH VQM_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
string(REGEX REPLACE "/$" "" VQM_PC_TO_PREFIX ${VQM_PC_TO_PREFIX})
configure_file(${CMAKE_CURRENT_LIST_DIR}/vqm.pc.in ${CMAKE_BINARY_DIR}/generated/vqm.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/generated/vqm.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# The Python binding is pure Python over the C API (ctypes), so it needs no compiling: only an
# interpreter with numpy, to test it and to name the site-packages folder it is installed to. A
# python3 earlier on PATH (pyenv, a venv) may lack numpy where Debian's, with python3-numpy, has it.
set(VQM_PYTHON "" CACHE FILEPATH "python3 with numpy (default: python3 on PATH, else /usr/bin)")
if(NOT VQM_PYTHON)
  find_program(VQM_PATH_PYTHON3 python3)
  foreach(py ${VQM_PATH_PYTHON3} /usr/bin/python3)
    execute_process(COMMAND ${py} -c "import numpy" RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
    if(rc EQUAL 0)
      set(VQM_PYTHON ${py} CACHE FILEPATH "python3 with numpy" FORCE)
      break()
    endif()
  endforeach()
endif()
if(VQM_PYTHON)
  # <prefix>/lib/python3.X/site-packages: with --prefix ~/.local this is the user site folder,
  # which python3 searches without PYTHONPATH.
  execute_process(COMMAND ${VQM_PYTHON} -c
    "import sys; print('lib/python%d.%d/site-packages' % sys.version_info[:2])"
    OUTPUT_VARIABLE VQM_PYTHON_SITE OUTPUT_STRIP_TRAILING_WHITESPACE)
  set(VQM_PYTHON_INSTALL_DIR ${VQM_PYTHON_SITE} CACHE PATH
    "where the vqm Python package is installed, relative to the prefix")
  if(IS_ABSOLUTE "${VQM_PYTHON_INSTALL_DIR}")
    message(FATAL_ERROR "VQM_PYTHON_INSTALL_DIR must be relative to the install prefix")
  endif()
  # The installed package finds the installed library through a path relative to itself.
  file(RELATIVE_PATH VQM_PY_TO_LIB /prefix/${VQM_PYTHON_INSTALL_DIR}/vqm
    /prefix/${CMAKE_INSTALL_LIBDIR})
  string(REGEX REPLACE "/$" "" VQM_PY_TO_LIB ${VQM_PY_TO_LIB})
  file(WRITE ${CMAKE_BINARY_DIR}/generated/_install.py
    "# Written by CMake at install: the installed libvqm.so, relative to this folder.\n"
    "LIBRARY = \"${VQM_PY_TO_LIB}/libvqm.so.${PROJECT_VERSION_MAJOR}\"\n")
  install(DIRECTORY ${CMAKE_SOURCE_DIR}/python/vqm DESTINATION ${VQM_PYTHON_INSTALL_DIR}
    PATTERN __pycache__ EXCLUDE)
  install(FILES ${CMAKE_BINARY_DIR}/generated/_install.py
    DESTINATION ${VQM_PYTHON_INSTALL_DIR}/vqm)
else()
  message(STATUS "vqm: no python3 with numpy found; the Python binding is neither tested nor "
    "installed (set VQM_PYTHON)")
endif()
