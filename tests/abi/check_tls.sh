#!/bin/sh
# check_tls.sh LIB: the library's thread-local storage stays small. Its initial-exec variables
# (read on every call) make the loader place all of its TLS in the static TLS block, and a
# program that dlopens the library late (Lua's require, Python's ctypes) gets that from a
# surplus of ~1.6 KB shared by every such library: the error message lives on the heap.
set -eu
lib=$1 limit=256
hex=$(readelf -lW "$lib" | awk '$1 == "TLS" { print $6 }')
size=$((${hex:-0}))
if [ "$size" -gt "$limit" ]; then
  echo "thread-local storage of $size bytes, over the $limit allowed (readelf -lW $lib)"
  exit 1
fi
echo "thread-local storage: $size bytes (limit $limit)"
