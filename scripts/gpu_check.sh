#!/usr/bin/env bash
# On a CUDA machine: the kernel and ensemble tests on the GPU, then `lab bench attention` and `lab bench train`,
# ending with one table. Under 5 minutes on an H100. Usage: scripts/gpu_check.sh [OUT_DIR]  (default: $OUT or
# ./gpu_check_out). Uses the python that has CUDA torch and triton (PYTHON=..., default python3); needs no install.
set -u
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu_check_out}}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
PY=${PYTHON:-python3}
$PY -c "import torch, triton; print('torch', torch.__version__, '| triton', triton.__version__, '|', torch.cuda.get_device_name())" || exit 1

start=$(date +%s)
echo "== tests on the GPU (kernels fp32 + bf16, model backends, ensembles, CUDA graphs)"
parallel=$($PY -c "import xdist" 2>/dev/null && echo "-n 8")  # Triton compiles each variant once: spread them
timeout 240 $PY -m pytest -q -rfE --tb=short -p no:cacheprovider $parallel tests/lab/test_kernels.py \
    tests/lab/test_ensemble.py tests/lab/test_model.py > "$out/tests.log" 2>&1
tests_rc=$?
tail -n 25 "$out/tests.log"
echo "   ($(( $(date +%s) - start )) s)"

echo "== lab bench attention"
timeout 150 $PY -m lab.cli bench attention --json > "$out/attention.json" 2> "$out/attention.err" \
    || tail -n 20 "$out/attention.err"
echo "== lab bench train"
timeout 180 $PY -m lab.cli bench train --sizes 1,4,16,64 --steps 30 --json > "$out/train.json" 2> "$out/train.err" \
    || tail -n 20 "$out/train.err"

echo
$PY - "$out" "$tests_rc" <<'PY'
import json, pathlib, sys
from lab.bench import format_rows
out, rc = pathlib.Path(sys.argv[1]), int(sys.argv[2])
print(f"GPU tests: {'passed' if rc == 0 else 'FAILED (see tests.log)'}")
for name in ("attention", "train"):
    lines = (out / f"{name}.json").read_text().strip().splitlines() if (out / f"{name}.json").exists() else []
    print(format_rows(json.loads(lines[-1])) if lines else f"{name}: no result (see {name}.err)")
PY
echo "total $(( $(date +%s) - start )) s"
exit $tests_rc
