#!/usr/bin/env bash
# Rebuilds every ebpf/src/*.bpf.c into ebpf/obj/*.bpf.o (the objects are
# committed, so the Rust workspace builds without clang).
#
#   ebpf/build.sh           rebuild ebpf/obj/ in place
#   ebpf/build.sh --check   rebuild into a temp dir; fail if any committed object
#                           differs from the rebuilt one or is missing/extra (CI)
#
# Needs clang, llvm (llvm-strip) and libbpf-dev: see ebpf/ci-setup.sh. The output
# is reproducible for a given clang version: paths are mapped to ".", DWARF is
# stripped (BTF, which aya needs, is kept). The clang version used is recorded in
# obj/CLANG_VERSION; --check refuses to compare against a different version.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

mode=build
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

CLANG="${CLANG:-clang}"
STRIP="${LLVM_STRIP:-llvm-strip}"
for tool in "$CLANG" "$STRIP"; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool not found (run ebpf/ci-setup.sh)" >&2; exit 1; }
done
[ -f /usr/include/bpf/bpf_helpers.h ] || { echo "build.sh: bpf/bpf_helpers.h missing (apt-get install libbpf-dev)" >&2; exit 1; }

clang_version="$("$CLANG" --version | head -n1)"
multiarch="$("$CLANG" -print-multiarch 2>/dev/null || true)"
[ -n "$multiarch" ] || multiarch="$(uname -m)-linux-gnu"

if [ "$mode" = check ]; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
  recorded="$(cat obj/CLANG_VERSION 2>/dev/null || echo '<none>')"
  if [ "$recorded" != "$clang_version" ]; then
    echo "build.sh --check: objects were built with '$recorded' but this machine has '$clang_version';" >&2
    echo "byte-identical output needs the same clang. Rebuild with ebpf/build.sh on the new toolchain." >&2
    exit 1
  fi
else
  out="$here/obj"
  mkdir -p "$out"
fi

shopt -s nullglob
sources=(src/*.bpf.c)
[ ${#sources[@]} -gt 0 ] || { echo "build.sh: no src/*.bpf.c" >&2; exit 1; }

for src in "${sources[@]}"; do
  name="$(basename "$src" .c)"
  obj="$out/$name.o"
  "$CLANG" -O2 -g -target bpf -Wall -Werror \
    -I"/usr/include/$multiarch" \
    -fdebug-prefix-map="$here"=. -fdebug-compilation-dir=. -fno-ident \
    -c "$src" -o "$obj.tmp"
  "$STRIP" -g "$obj.tmp" -o "$obj"
  rm -f "$obj.tmp"
  echo "built $name.o"
done

if [ "$mode" = check ]; then
  status=0
  for obj in "$out"/*.o; do
    name="$(basename "$obj")"
    if ! cmp -s "$obj" "obj/$name"; then
      echo "DIFFERS: ebpf/obj/$name is stale or was not built by ebpf/build.sh" >&2
      status=1
    fi
  done
  for obj in obj/*.o; do
    [ -e "$out/$(basename "$obj")" ] || { echo "EXTRA: ebpf/$obj has no source in ebpf/src/" >&2; status=1; }
  done
  [ $status -eq 0 ] && echo "ebpf objects are up to date"
  exit $status
else
  echo "$clang_version" > "$out/CLANG_VERSION"
fi
