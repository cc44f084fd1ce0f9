#!/bin/bash -eu
# ClusterFuzzLite / OSS-Fuzz build: install vmafuzz, then one fuzzer per
# fuzz/targets/*_fuzzer.py, each with its dictionary, options and seed corpus in $OUT.

repo="$SRC/vmafuzz"
cd "$repo"

# The extension is built uninstrumented with the stable toolchain: the base image's RUSTFLAGS
# carry nightly-only sanitizer flags, and its CFLAGS would instrument the C allocator the
# engine links (mimalloc). libFuzzer sees inside the Rust engine through the interleaving
# features the target reports (fuzz/targets/check_case_fuzzer.py).
env -u RUSTFLAGS -u CFLAGS -u CXXFLAGS pip3 install .

# The seed corpus: every bundled corpus bundle, merged.
seeds="${WORK:-/tmp}/vmafuzz-seeds.lz4"
vmafuzz corpus merge "$seeds" corpora/*.lz4

for fuzzer in fuzz/targets/*_fuzzer.py; do
  name=$(basename -s .py "$fuzzer")
  compile_python_fuzzer "$fuzzer"
  for extra in "${fuzzer%.py}.dict" "${fuzzer%.py}.options"; do
    if [ -f "$extra" ]; then
      cp "$extra" "$OUT/"
    fi
  done
  vmafuzz corpus export-seeds "$seeds" "$OUT/${name}_seed_corpus.zip"
done
