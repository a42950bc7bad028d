# go.cmake: runs the go command for the CTest tests of the Go binding, pointed at the library
# of this build tree.
#   cmake -DGO=<go> -DDIR=<working dir> -DBUILD=<build dir> -DSOURCE=<source dir>
#         -P go.cmake <go arguments...>
# The go command caches packages by the content of their own files only, and capi.swig
# %includes files from outside its package (bindings/autograd.i, bindings/go/typemaps.i,
# abi/autograd.h): their hash goes into CGO_CFLAGS, which is part of every cgo package's
# cache key, so editing them regenerates the SWIG layer.
set(args "")
set(after_script OFF)
foreach(i RANGE 1 ${CMAKE_ARGC})
  if(after_script AND DEFINED CMAKE_ARGV${i})
    list(APPEND args "${CMAKE_ARGV${i}}")
  endif()
  if("${CMAKE_ARGV${i}}" MATCHES "go\\.cmake$")
    set(after_script ON)
  endif()
endforeach()

set(iface "")
foreach(f bindings/autograd.i bindings/go/typemaps.i abi/autograd.h)
  file(SHA256 "${SOURCE}/${f}" h)
  string(APPEND iface "${h}")
endforeach()
string(SHA256 iface "${iface}")
string(SUBSTRING "${iface}" 0 16 iface)

set(ENV{PKG_CONFIG_PATH} "${BUILD}/pkgconfig-uninstalled")
set(ENV{CGO_ENABLED} "1")
set(ENV{CGO_CFLAGS} "-O2 -g -DAGO_INTERFACE_HASH=${iface}")
set(ENV{GOCACHE} "${BUILD}/go-cache")
set(ENV{GOFLAGS} "-buildvcs=false")
set(ENV{GOTOOLCHAIN} "local")

execute_process(COMMAND "${GO}" ${args} WORKING_DIRECTORY "${DIR}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "go ${args} (in ${DIR}) exited with ${rc}")
endif()
