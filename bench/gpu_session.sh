#!/usr/bin/env bash
# Every GPU measurement of the VSA and decode/encode work, in one command that ends well
# inside 8 minutes on an H100/H200: what a session lent a GPU runs once (see bench/README.md).
#
#   bash bench/gpu_session.sh                 # on the GPU machine; results under $OUT (or ./bench-out)
#   TINY=1 bash bench/gpu_session.sh          # the same scripts on a CPU, tiny shapes (a check)
#
# The device image has torch but not diffusers, av, ftfy or cattrs: wheels for them in .whl/
# (bench/README.md says how to fetch them) are installed to /tmp/site first, and our sources
# go on PYTHONPATH, so nothing is built there.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-bench-out}
mkdir -p "$out"
python=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site
fi
for src in packages/fastwan_core/src packages/fastwan_adapters/src; do
  PYTHONPATH="$PWD/$src${PYTHONPATH:+:$PYTHONPATH}"
done
export PYTHONPATH PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
run() {  # run NAME SECONDS COMMAND...: one bench, its own time limit, its output kept
  local name=$1 limit=$2
  shift 2
  echo "== $name: $*"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
  echo "== $name: exit ${PIPESTATUS[0]}"
}
if [ "${TINY:-0}" = 1 ]; then
  run attention 300 "$python" bench/attention.py --runs 3
  run generate 600 "$python" bench/gpu_generate.py --tiny --profiles resident --attention dense,vsa --runs 1 --no-decode-rows
  exit 0
fi
timeout -k 2 10 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
# 75 + 45 + 300 s: under 7 minutes of commands, inside 8 with the machine's own start.
run attention 75 "$python" bench/attention.py --runs 20
run attention-704x1280 45 "$python" bench/attention.py --runs 20 --grid 31,40,22 --no-reference
# dense and VSA rows (the 0.65x target: the step columns), then the decode -> encode rows
run generate 300 "$python" bench/gpu_generate.py --profiles resident --attention dense,vsa --runs 2 \
  --budget-s 240 --json "$out/generate.json"
