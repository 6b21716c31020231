#!/usr/bin/env bash
# The GPU checks in one call, as run on a lent device machine (one H200; its image's python3
# holds torch and triton; wheels missing there travel in .whl/). Writes under $OUT:
#   linear_speed-cuda.json      issue 4: linear forms vs softmax, bf16, B·N = 65,536, H = 16, d = 128
#   triton_vs_fla-cuda.json     issue 19: our tiled chunk kernels beside fla-core's (delta rule at
#                               d_dot 256 × d 128 and 384 × 64, sum rule), bf16, H = 16, N = 16384;
#                               fla-core rows say `skipped` unless its wheel travels in .whl/:
#                               pip download --no-deps fla-core einops -d .whl (and carry .whl)
#   pytest-kernels.log          the tiled kernels against their PyTorch twins on the GPU
#   pytest-gpu.log              every test marked gpu (CUDA variants vs the float64 oracle, ...)
#   retrieval-paper-h200.jsonl  suites/retrieval-paper.toml, in 8 processes sharing the GPU
#   retrieval-paper.log         their progress
# Budget (seconds) per part: LINEAR_S, KERNELS_S, RETRIEVAL_S; parts run past it are cut, keeping
# what finished. Without a CUDA device it says so and exits 0 having run nothing.
set -u
OUT=${OUT:-/tmp/device-out}
LINEAR_S=${LINEAR_S:-100}
KERNELS_S=${KERNELS_S:-60}
RETRIEVAL_S=${RETRIEVAL_S:-330}
SHARDS=${SHARDS:-8}
mkdir -p "$OUT"
if ! python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
  echo "no CUDA device here: the GPU checks are skipped (run this on a lent device machine)"
  exit 0
fi
mkdir -p /tmp/rp
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 ATTNBENCH_CACHE_DIR=/tmp/attnbench-cache
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"

echo "== linear_speed (alone on the GPU: it times)"
timeout "$LINEAR_S" python3 benchmarks/linear_speed.py --device cuda --dtype bfloat16 --seq-len 65536 \
  --heads 16 --d-head 128 --min-run-time 0.2 -o "$OUT/linear_speed-cuda.json" 2>&1 | tail -25

echo "== Triton chunk kernels beside fla-core's (alone on the GPU: it times)"
python3 -c "import fla" 2>/dev/null || echo "fla-core not installed: its rows are skipped (see the header)"
timeout "$KERNELS_S" python3 benchmarks/triton_vs_fla.py --min-run-time 0.1 -o "$OUT/triton_vs_fla-cuda.json" 2>&1 | tail -25
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_triton_kernels.py tests/test_kernel_budget.py \
  >"$OUT/pytest-kernels.log" 2>&1
echo "tiled kernels on the GPU: pytest exit $?"; tail -3 "$OUT/pytest-kernels.log"

echo "== retrieval-paper in $SHARDS shards, with pytest -m gpu beside them"
for i in $(seq 0 $((SHARDS - 1))); do
  timeout -s INT "$RETRIEVAL_S" python3 -m attnbench run --suite retrieval-paper --device cuda \
    --shard "$i/$SHARDS" -o "/tmp/rp/rp-$i.jsonl" >"/tmp/rp/rp-$i.log" 2>&1 &
done
timeout 240 python3 -m pytest -m gpu -q -p no:cacheprovider >"$OUT/pytest-gpu.log" 2>&1
echo "pytest -m gpu exit $?"; tail -5 "$OUT/pytest-gpu.log"
wait
cat /tmp/rp/rp-*.jsonl >"$OUT/retrieval-paper-h200.jsonl" 2>/dev/null
for f in /tmp/rp/rp-*.log; do echo "== $f"; tail -c 1500 "$f"; done >"$OUT/retrieval-paper.log"
echo "retrieval-paper: $(wc -l <"$OUT/retrieval-paper-h200.jsonl") of 240 cases finished"
python3 -m attnbench show "$OUT/retrieval-paper-h200.jsonl" 2>&1 | tail -20
