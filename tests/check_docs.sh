#!/usr/bin/env bash
# make check-docs: every run-book command written in a comment of src/, kernels/ or tests/ (and in
# README.md) is runnable as written from the repo root.
#
# A run-book command is `build/<binary>` followed by its doctest filters (-ts=..., -tc='...', ...).
# Each one is checked against the binary it names: the filters must select at least one test case
# (doctest --count), which catches renamed suites and cases and paths to build folders that do
# not exist. The cheap ones (suites io and emu: under a few seconds) are also run and must pass.
# build/test_gpu commands are counted against build/test_emu (the same test files; test_gpu is
# built only on a GPU machine); build/pompc commands are checked against `build/pompc help`, and
# `make TARGET` written in backticks against the Makefile's rules.
#   usage: tests/check_docs.sh   (make check-docs builds test_emu, test_race, bench and pompc first)
set -uo pipefail
cd "$(dirname "$0")/.."
CHEAP_SUITES="io emu"

# One line per command occurrence: "file:line<TAB>command". Filter values are quoted ('...') or
# plain words (letters, digits, _ * ,); a trailing comma or full stop belongs to the prose.
extract() {
  grep -rnoE --include='*.h' --include='*.cpp' --include='*.cu' --include='*.sh' --include='*.md' --exclude=check_docs.sh \
      "build/(test_emu|test_race|test_gpu|bench|pompc)( +(-[a-z-]+(=('[^']*'|[A-Za-z0-9_*,]+))?|[a-z]+(=[A-Za-z0-9_,./-]+)?))*" \
      src kernels tests README.md |
    sed -E 's/^([^:]+:[0-9]+):/\1\t/; s/,+$//'
}

failures=0 checked=0 ran=0
fail() { echo "check-docs: $1"; failures=$((failures + 1)); }

pompc_help=$(build/pompc help 2>&1 || true)
while IFS=$'\t' read -r where cmd; do
  # Split as the shell would (the pattern above admits no expansion outside single quotes).
  eval "words=($cmd)"
  bin=${words[0]}
  args=("${words[@]:1}")
  checked=$((checked + 1))
  case $bin in
    build/pompc)
      sub=${args[0]:-}
      if [[ -n $sub && $pompc_help != *"  $sub "* && $pompc_help != *"  $sub"$'\n'* ]]; then
        fail "$where: '$cmd': pompc has no subcommand '$sub' (build/pompc help)"
      fi
      continue ;;
    build/test_gpu) counter=build/test_emu ;;
    *) counter=$bin ;;
  esac
  if [[ ! -x $counter ]]; then
    fail "$where: '$cmd': $counter does not exist (make check-docs builds it)"
    continue
  fi
  n=$("$counter" "${args[@]}" -c 2>&1 | sed -nE 's/.*passing the current filters: ([0-9]+).*/\1/p')
  if [[ -z $n || $n -eq 0 ]]; then
    fail "$where: '$cmd' selects no test case (renamed suite or case?)"
    continue
  fi
  suites=$(printf '%s\n' "${args[@]}" | sed -nE 's/^-ts=(.*)/\1/p' | tr ',' ' ')
  cheap=${suites:+yes}
  for s in $suites; do [[ " $CHEAP_SUITES " == *" $s "* ]] || cheap=; done
  if [[ -n $cheap && $bin != build/test_gpu ]]; then
    ran=$((ran + 1))
    if ! out=$("$bin" "${args[@]}" 2>&1); then
      fail "$where: '$cmd' failed:"$'\n'"$(tail -n 20 <<< "$out")"
    fi
  fi
done < <(extract | sort -u -t$'\t' -k2,2)

# `make TARGET` in backticks: the Makefile has a rule for TARGET.
while IFS=$'\t' read -r where target; do
  checked=$((checked + 1))
  grep -qE "^([^#=:]* )?$target( [^=:]*)?:" Makefile ||
    fail "$where: \`make $target\`: the Makefile has no target '$target'"
done < <(grep -rnoE --include='*.h' --include='*.cpp' --include='*.cu' --include='*.md' \
           '`make( -j ?[0-9]+)? [a-z][a-z0-9-]*`' src kernels tests README.md |
         sed -E 's/^([^:]+:[0-9]+):`make( -j ?[0-9]+)? ([^`]*)`$/\1\t\3/' | sort -u -t$'\t' -k2,2)

echo "check-docs: $checked distinct run-book commands checked, $ran run, $failures failed"
[[ $failures -eq 0 ]]
