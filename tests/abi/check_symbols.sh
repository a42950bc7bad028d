#!/bin/sh
# check_symbols.sh LIB HEADER MAP: the library's dynamic symbol table exports exactly the
# functions the public header declares, all prefixed ag_, each tagged with a version from the
# linker script, and nothing else.
set -eu
lib=$1 header=$2 map=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

nm -D --defined-only "$lib" | awk '$2 ~ /^[TWDBR]$/ { print $3 }' | sed 's/@.*//' | sort -u >"$tmp/exported"
grep -oE 'AG_API[^;(]*\bag_[a-z0-9_]+[[:space:]]*\(' "$header" | grep -oE 'ag_[a-z0-9_]+' | sort -u >"$tmp/declared"
grep -oE '^[[:space:]]+ag_[a-z0-9_]+;' "$map" | tr -d ' ;' | sort -u >"$tmp/mapped"

status=0
bad=$(grep -v '^ag_' "$tmp/exported" || true)
if [ -n "$bad" ]; then echo "exported symbols without the ag_ prefix:"; echo "$bad"; status=1; fi
extra=$(comm -23 "$tmp/exported" "$tmp/declared")
if [ -n "$extra" ]; then echo "exported but not declared in $header:"; echo "$extra"; status=1; fi
missing=$(comm -13 "$tmp/exported" "$tmp/declared")
if [ -n "$missing" ]; then echo "declared but not exported:"; echo "$missing"; status=1; fi
unmapped=$(comm -13 "$tmp/mapped" "$tmp/declared")
if [ -n "$unmapped" ]; then echo "declared but missing from the version script:"; echo "$unmapped"; status=1; fi
untagged=$(objdump -T "$lib" | awk '/ ag_/ && $0 !~ /AUTOGRAD_/' || true)
if [ -n "$untagged" ]; then echo "symbols without a version tag:"; echo "$untagged"; status=1; fi
soname=$(objdump -p "$lib" | awk '/SONAME/ { print $2 }')
case "$soname" in
  libautograd.so.[0-9]*) ;;
  *) echo "unexpected SONAME '$soname'"; status=1 ;;
esac
n=$(wc -l <"$tmp/exported")
[ "$status" = 0 ] && echo "$n exported symbols, all ag_, all declared and versioned; SONAME $soname"
exit $status
