#!/usr/bin/env bash
# The layer rule of DESIGN.md, checked: a module of the advtrain library may use only
# modules of its own layer or of the layers below it. Prints every upward import and exits
# non-zero when there is one. Needs nothing but bash and awk (it runs in CI and in the
# before-stop hook, in well under a second).
#
# Usage: scripts/check_layers.sh [SRC_DIR]   (default: crates/advtrain/src)
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:-crates/advtrain/src}

# The layers, lowest first: one line per layer, module paths relative to SRC without `.rs`
# (a folder covers every file in it; the longest listed prefix wins). Written once, here.
LAYERS='
fastpath rng io error progress
threat loss
data model text text/data text/encode text/canon text/model text/wordnet text/target text/transformer
attack text/edits text/attack
eval text/eval text/detection text/evasion
train text/train
run bench device_check text/run text/evasion_files
report
lib
'

find "$SRC" -name '*.rs' | sort | awk -v src="$SRC" -v layers="$LAYERS" '
function module_of(file,   m) {            # crates/advtrain/src/text/data/mod.rs -> text/data
  m = substr(file, length(src) + 2)
  sub(/\.rs$/, "", m); sub(/\/mod$/, "", m)
  return m
}
function layer_of(path,   p) {             # longest listed prefix of path, or -1
  p = path
  while (p != "") {
    if (p in layer) return layer[p]
    if (index(p, "/") == 0) break
    sub(/\/[^\/]*$/, "", p)
  }
  return -1
}
function check(file, line_no, target,   tl) {
  tl = layer_of(target)
  if (tl > own) {
    printf "%s:%d: %s (layer %d) imports %s (layer %d)\n", file, line_no, mod, own, target, tl
    bad++
  }
}
BEGIN {
  n = split(layers, rows, "\n"); l = 0
  for (i = 1; i <= n; i++) {
    if (rows[i] ~ /^[ \t]*$/) continue
    k = split(rows[i], names, " ")
    for (j = 1; j <= k; j++) layer[names[j]] = l
    l++
  }
}
{
  file = $0; mod = module_of(file); own = layer_of(mod)
  if (own < 0) { printf "%s: module %s is in no layer (add it to scripts/check_layers.sh)\n", file, mod; bad++; next }
  # The module a `super::` path starts from: a mod.rs is its own parent.
  parent = mod
  if (file !~ /\/mod\.rs$/ && file !~ /\/lib\.rs$/) { if (index(parent, "/")) sub(/\/[^\/]*$/, "", parent); else parent = "" }
  line_no = 0
  while ((getline text < file) > 0) {
    line_no++
    if (text ~ /^[ \t]*\/\//) continue                 # comments and doc comments
    rest = text
    while (match(rest, /crate::[a-z_]+(::[a-z_]+)*/)) {
      path = substr(rest, RSTART + 7, RLENGTH - 7); rest = substr(rest, RSTART + RLENGTH)
      gsub(/::/, "/", path); check(file, line_no, path)
    }
    rest = text
    while (match(rest, /crate::\{[^}]*\}/)) {          # use crate::{a, b::c, Error}
      group = substr(rest, RSTART + 8, RLENGTH - 9); rest = substr(rest, RSTART + RLENGTH)
      k = split(group, items, ",")
      for (j = 1; j <= k; j++) {
        item = items[j]; gsub(/[ \t]/, "", item); sub(/::.*/, "", item)
        if (item ~ /^[a-z_]+$/ && item != "self") check(file, line_no, item)
      }
    }
    rest = text
    while (match(rest, /super::[a-z_]+(::[a-z_]+)*/)) {
      path = substr(rest, RSTART + 7, RLENGTH - 7); rest = substr(rest, RSTART + RLENGTH)
      gsub(/::/, "/", path)
      if (parent != "") check(file, line_no, parent "/" path); else check(file, line_no, path)
    }
  }
  close(file)
}
END {
  if (bad) { printf "%d upward import(s): a module may use only its own layer and those below it\n", bad; exit 1 }
  print "layers: no upward imports"
}'
