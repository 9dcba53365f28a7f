#!/usr/bin/env bash
# Everything a session lent a GPU should learn, in one command that ends inside 8 minutes on an
# H100/H200 (bench/README.md, "On a lent GPU"). First the carried wheels and a preflight that says
# in one line what this Python lacks; then the parts, in order of value, each under its own time
# limit and none past the budget's end; a part that cannot get the least time it needs from what
# is left of the budget is skipped, and says so (the worker's parts also when the model failed):
#
#   model         bench/full_size_model.py: the full-size random-weight checkpoint, written here
#   e2e-resident  bench/worker_e2e.py: the worker process on it, I2V 720x1280 and T2V 1280x704, 121 frames
#   e2e-10gib     the same I2V job with the GPU capped at 10 GiB (the seed's RTX 3080 class)
#   attention     bench/attention.py: one self-attention call, dense against VSA, at 1280x704
#   steps         bench/gpu_generate.py: the step columns, dense against VSA (the 0.65x target)
#   decode        bench/decode_encode.py --gpu: the decode -> encode rows
#   e2e-16gib, e2e-24gib   the I2V job capped at 16 and 24 GiB
#
#   bash bench/gpu_session.sh            # on the GPU machine; results under $OUT (or ./bench-out)
#   TINY=1 bash bench/gpu_session.sh     # every part on a CPU at small shapes (a check; CI runs it)
#
# Each part ends with one line "== <part>: <what happened>, exit <status>" ("exit skipped" when it
# did not run). $OUT gets session.log (everything printed) and results.json (each part's JSON and
# those lines), rewritten after each part. May be set: BUDGET_S (450; TINY 1200), PARTS (the names
# of the parts to run, e.g. "decode e2e-16gib" for a second call), WORK_DIR (where the model and the
# wheels' site go; a model already there is reused), PYTHON (python3), WHEELS=1 (TINY=1 installs
# .whl/ too, for a Python they were fetched for).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
tiny=${TINY:-0}
out=${OUT:-bench-out}
work=${WORK_DIR:-/tmp/fastwan-gpu-session}
python=${PYTHON:-python3}
if [ -z "${PYTHON:-}" ] && ! "$python" -c "import torch" 2>/dev/null && [ -x /opt/torch/.venv/bin/python3 ]; then
  python=/opt/torch/.venv/bin/python3  # the GPU machine's Python with torch, should python3 be another
fi
if [ "$tiny" = 1 ]; then budget=${BUDGET_S:-1200}; else budget=${BUDGET_S:-450}; fi
started=$SECONDS
mkdir -p "$out" "$work"
rm -rf "$work/json" "$work/parts.txt" "$work"/.model-* "$work"/.tiny-model-*  # and a model half written
mkdir -p "$work/json"

install_wheels() {  # the carried wheels into $work/site, first on the path after our sources
  if ! compgen -G ".whl/*.whl" >/dev/null; then
    echo "wheels: none in .whl/ (bench/README.md says how to fetch them)"
    return
  fi
  if [ "$tiny" = 1 ] && [ "${WHEELS:-0}" != 1 ]; then
    echo "wheels: .whl/ left alone (TINY=1 runs on this Python's packages; WHEELS=1 installs them)"
    return
  fi
  rm -rf "$work/site"
  local how=pip
  if ! "$python" -m pip --version >/dev/null 2>&1; then
    how="unzipped (this Python has no pip)"
  elif ! "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$work/site" \
    .whl/*.whl; then
    how="unzipped (pip refused them, above; the preflight says what does not import)"
  fi
  if [ "$how" != pip ]; then  # a wheel is a zip laid out for site-packages
    rm -rf "$work/site"
    for wheel in .whl/*.whl; do "$python" -m zipfile -e "$wheel" "$work/site"; done
  fi
  echo "wheels: $(compgen -G ".whl/*.whl" | wc -l) from .whl/ in $work/site, $how"
  PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
}

merge() {  # $OUT/results.json: every part's JSON so far, and the result lines
  "$python" - "$work" "$out/results.json" <<'EOF'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
results = {}
for path in sorted((work / "json").glob("*.json")):
    try:
        results[path.stem] = json.loads(path.read_text())
    except ValueError as error:
        results[path.stem] = {"unreadable": str(error)}
lines = (work / "parts.txt").read_text().splitlines() if (work / "parts.txt").exists() else []
Path(sys.argv[2]).write_text(json.dumps({"parts": lines, **results}, indent=1))
EOF
}

part() {  # part NAME NEED LIMIT COMMAND...: run it until its limit or the budget's end, whichever
  # comes first; skipped when less than NEED seconds (the least in which it can finish) are left
  local name=$1 need=$2 limit=$3 left=$((budget - (SECONDS - started))) begin=$SECONDS status verdict line
  shift 3
  if [ -n "${PARTS:-}" ] && [[ " $PARTS " != *" $name "* ]]; then
    line="== $name: skipped, not in PARTS, exit skipped"
  elif [ "$need" -gt "$left" ]; then
    line="== $name: skipped, it needs ${need} s and ${left} s of the ${budget} s budget are left, exit skipped"
  elif [ -n "${missing_model:-}" ] && [[ "$name" == e2e-* ]]; then
    line="== $name: skipped, no model ($missing_model), exit skipped"
  else
    [ "$limit" -gt "$left" ] && limit=$left
    echo "-- $name (limit ${limit} s): $*"
    timeout -k 10 "$limit" "$@"
    status=$?
    case $status in
      0) verdict=ok ;;
      124 | 137) verdict="stopped at its limit" ;;
      *) verdict=failed ;;
    esac
    line="== $name: $verdict in $((SECONDS - begin)) s (limit ${limit} s), exit $status"
    [ "$name" = model ] && [ "$status" != 0 ] && missing_model="the model part ended with exit $status"
  fi
  echo "$line"
  echo "$line" >>"$work/parts.txt"
  merge
}

session() {
  echo "gpu session: $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null || echo 'no git'), TINY=$tiny, budget ${budget} s"
  install_wheels
  for src in packages/fastwan_core/src packages/fastwan_adapters/src apps/queue_worker/src; do
    PYTHONPATH="$PWD/$src${PYTHONPATH:+:$PYTHONPATH}"
  done
  export PYTHONPATH PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
  local json=$work/json
  if [ "$tiny" = 1 ]; then
    local model=$work/tiny-model
    echo "gpu: none (TINY=1: small shapes on the CPU; its figures mean nothing)"
  else
    local model=$work/model
    timeout -k 2 10 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
  fi
  if [ "$tiny" = 1 ]; then
    part preflight 10 120 "$python" bench/preflight.py
    part model 10 240 "$python" bench/full_size_model.py --out "$model" --size tiny --json "$json/model.json"
    part e2e-resident 20 240 "$python" bench/worker_e2e.py --model "$model" --tiny --jobs i2v,t2v \
      --json "$json/e2e-resident.json"
    part e2e-10gib 20 240 "$python" bench/worker_e2e.py --model "$model" --tiny --jobs i2v --memory-cap-gib 10 \
      --json "$json/e2e-10gib.json"
    # flex_attention uncompiled: torch.compile takes ~40 s on a cold CPU cache, and the compiled
    # path is checked against the reference by tests/adapters/test_vsa_kernels.py.
    part attention 10 180 env TORCHDYNAMO_DISABLE=1 "$python" bench/attention.py --grid 3,8,8 --heads 2 \
      --head-dim 32 --runs 2
    part steps 10 240 "$python" bench/gpu_generate.py --tiny --profiles resident --attention dense,vsa \
      --runs 1 --frames 5 --no-decode-rows --json "$json/steps.json"
    part decode 10 180 "$python" bench/decode_encode.py --frames 5 --width 128 --height 128 --runs 1 \
      --json "$json/decode.json"
    for gib in 16 24; do
      part "e2e-${gib}gib" 20 240 "$python" bench/worker_e2e.py --model "$model" --tiny --jobs i2v \
        --memory-cap-gib "$gib" --json "$json/e2e-${gib}gib.json"
    done
  else
    part preflight 20 90 "$python" bench/preflight.py
    part model 60 200 "$python" bench/full_size_model.py --out "$model" --size full --json "$json/model.json"
    part e2e-resident 120 240 "$python" bench/worker_e2e.py --model "$model" --jobs i2v,t2v \
      --json "$json/e2e-resident.json"
    part e2e-10gib 120 240 "$python" bench/worker_e2e.py --model "$model" --jobs i2v --memory-cap-gib 10 \
      --json "$json/e2e-10gib.json"
    part attention 30 75 "$python" bench/attention.py --runs 10
    part steps 120 210 "$python" bench/gpu_generate.py --profiles resident --attention dense,vsa --runs 1 \
      --no-decode-rows --budget-s 170 --json "$json/steps.json"
    part decode 60 150 "$python" bench/decode_encode.py --gpu --runs 2 --json "$json/decode.json"
    for gib in 16 24; do
      part "e2e-${gib}gib" 120 240 "$python" bench/worker_e2e.py --model "$model" --jobs i2v \
        --memory-cap-gib "$gib" --json "$json/e2e-${gib}gib.json"
    done
  fi
  echo "gpu session: done in $((SECONDS - started)) s; results in $out/results.json, everything in $out/session.log"
}

session 2>&1 | tee "$out/session.log"
