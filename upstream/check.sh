#!/usr/bin/env bash
# Check the patches of upstream/patches against datasets' own tests, offline but for the package
# index:
#
#   bash upstream/check.sh
#
# 1. takes the datasets 5.2.0 source distribution (pip download, or DATASETS_SDIST=<tar.gz>)
#    and checks its sha256;
# 2. applies the patches in sequence, and checks that each also applies to 5.2.0 alone and
#    that the tests it adds fail without it and pass with it alone;
# 3. runs the relevant test files of datasets itself (the sdist's, with the patches' new tests)
#    against the 5.2.0 sources, then against the patched ones, and compares the two runs:
#    the added tests must go from failed to passed and no other test may change;
# 4. runs each repro script against both sources.
#
# The sdist ships tests/test_*.py but not their conftest.py, utils.py or fixtures/:
# upstream/check/sdist_conftest.py and sdist_utils.py stand in for them; tests needing what they
# do not give are skipped and counted by reason. Python: PYTHON (default: the repository's
# .venv, which has datasets 5.2.0's dependencies); the released datasets installed there is
# shadowed by PYTHONPATH. Extra test dependency: absl-py (pip install --target, in a temp dir).
# Exit code 0 only when every check holds.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
VERSION=5.2.0
SDIST_SHA256=f4290d4704dfbc99631a578b56912d66b22def53d3f61d246f6ccc129675490e
ABSL_PY=absl-py==2.5.1  # tests/test_arrow_dataset.py imports absl.testing.parameterized
TEST_FILES=(tests/test_arrow_writer.py tests/test_arrow_dataset.py tests/test_load.py
            tests/features/test_nifti_relative_path.py)
PATCHES=("$HERE"/patches/*.patch)

WORK="$(mktemp -d "${TMPDIR:-/tmp}/datasets-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export HF_HOME="$WORK/hf-home" HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export PYTHONDONTWRITEBYTECODE=1
failed=0

echo "== datasets $VERSION source distribution"
if [[ -n "${DATASETS_SDIST:-}" ]]; then
  sdist="$DATASETS_SDIST"
else
  "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: "datasets==$VERSION" -d "$WORK/dl" \
    2>"$WORK/pip.log" || { cat "$WORK/pip.log"; exit 1; }
  sdist="$WORK/dl/datasets-$VERSION.tar.gz"
fi
echo "$SDIST_SHA256  $sdist" | sha256sum --check --quiet
echo "$(basename "$sdist"): sha256 $SDIST_SHA256"
mkdir "$WORK/released"
tar -xzf "$sdist" -C "$WORK/released" --strip-components=1
"$PYTHON" -m pip install --quiet --no-deps --target "$WORK/deps" "$ABSL_PY" 2>"$WORK/pip.log" ||
  { cat "$WORK/pip.log"; exit 1; }

# A copy of the sdist with its tests made runnable (helpers, packages) and the patches applied.
fresh_copy() {  # fresh_copy DIR: the released sdist, plus the stand-ins for its missing helpers
  cp -r "$WORK/released" "$1"
  [[ -e "$1/tests/conftest.py" ]] || cp "$HERE/check/sdist_conftest.py" "$1/tests/conftest.py"
  [[ -e "$1/tests/utils.py" ]] || cp "$HERE/check/sdist_utils.py" "$1/tests/utils.py"
  mkdir -p "$1/tests/features"
  touch "$1/tests/__init__.py" "$1/tests/features/__init__.py"
}

run_tests() {  # run_tests TREE SRC JUNIT ARGS...: TREE's tests against SRC's datasets
  local tree=$1 src=$2 junit=$3
  shift 3
  (cd "$tree" && PYTHONPATH="$src/src:$WORK/deps" "$PYTHON" -m pytest -p no:cacheprovider \
    --basetemp="$WORK/pt" -m "not integration" -q --no-header -rN --junitxml="$junit" "$@" \
    >"$junit.log" 2>&1) || true
  tail -n 1 "$junit.log"
}

added_tests() {  # added_tests PATCH: pytest node ids of the test functions the patch adds
  awk '/^\+\+\+ b\// {f = substr($2, 3)} /^\+def test_/ && f ~ /^tests\// {
         sub(/^\+def /, ""); sub(/\(.*/, ""); print f "::" $0 }' "$1"
}

echo
echo "== patches, in sequence"
fresh_copy "$WORK/patched"
for p in "${PATCHES[@]}"; do
  patch --quiet --batch -p1 -d "$WORK/patched" <"$p"
  echo "applied $(basename "$p")"
done

echo
echo "== each patch alone on $VERSION: its added tests fail without it, pass with it"
for p in "${PATCHES[@]}"; do
  rm -rf "$WORK/alone"
  fresh_copy "$WORK/alone"
  patch --quiet --batch -p1 -d "$WORK/alone" <"$p"
  mapfile -t ids < <(added_tests "$p")
  before=$(run_tests "$WORK/alone" "$WORK/released" "$WORK/alone-before.xml" "${ids[@]}")
  after=$(run_tests "$WORK/alone" "$WORK/alone" "$WORK/alone-after.xml" "${ids[@]}")
  verdict=ok
  if ! [[ "$before" =~ ^[0-9]+\ failed && ! "$before" =~ passed|error ]] ||
     ! [[ "$after" =~ ^[0-9]+\ passed && ! "$after" =~ failed|error|skipped ]]; then
    verdict=FAIL
    failed=1
  fi
  printf '%-28s %d test functions | 5.2.0: %-10s | patched: %-10s %s\n' "$(basename "$p")" "${#ids[@]}" \
    "${before% in *}" "${after% in *}" "$verdict"
done

echo
echo "== datasets' tests: ${TEST_FILES[*]}"
run_tests "$WORK/patched" "$WORK/released" "$WORK/before.xml" "${TEST_FILES[@]}" >/dev/null
run_tests "$WORK/patched" "$WORK/patched" "$WORK/after.xml" "${TEST_FILES[@]}" >/dev/null
"$PYTHON" "$HERE/check/compare.py" "$WORK/before.xml" "$WORK/after.xml" "${PATCHES[@]}" || failed=1

echo
echo "== repro scripts (exit 1 while the problem is there, 0 once fixed)"
for script in "$HERE"/repro/[0-9]_*.py; do
  name=$(basename "$script" .py)
  [[ -e "$HERE/patches/$name.patch" ]] || continue  # no patch: a feature request
  line=""
  for src in released patched; do
    if out=$(PYTHONPATH="$WORK/$src/src" "$PYTHON" "$script" 2>&1); then rc=0; else rc=$?; fi
    line+=$(printf ' | %s: exit %d, %s' "$src" "$rc" "$(tail -n 1 <<<"$out")")
    case "$src:$rc" in released:1 | patched:0) ;; *) failed=1 ;; esac
  done
  echo "$name$line"
done

echo
if ((failed)); then echo "CHECK FAILED"; else echo "CHECK PASSED"; fi
exit "$failed"
