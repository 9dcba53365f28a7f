#!/usr/bin/env bash
# Everything a session lent a GPU should learn, in one command that ends inside 8 minutes on an
# H100/H200 (bench/README.md, "On a lent GPU"). First the carried wheels and a preflight that says
# in one line what this Python lacks; then the parts, in order of value, each under its own time
# limit, and a part whose limit is more than what is left of the budget is skipped, and says so:
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
# those lines), rewritten after each part. BUDGET_S (450; TINY 1200), WORK_DIR (where the model and
# the wheels' site go; a model already there is reused), PYTHON (python3) may be set.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
tiny=${TINY:-0}
out=${OUT:-bench-out}
work=${WORK_DIR:-/tmp/fastwan-gpu-session}
python=${PYTHON:-python3}
if [ "$tiny" = 1 ]; then budget=${BUDGET_S:-1200}; else budget=${BUDGET_S:-450}; fi
started=$SECONDS
mkdir -p "$out" "$work"
rm -rf "$work/json" "$work/parts.txt"
mkdir -p "$work/json"

install_wheels() {  # the carried wheels into $work/site, first on the path after our sources
  if ! compgen -G ".whl/*.whl" >/dev/null; then
    echo "wheels: none in .whl/ (bench/README.md says how to fetch them)"
    return
  fi
  rm -rf "$work/site"
  if "$python" -m pip --version >/dev/null 2>&1; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$work/site" .whl/*.whl \
      || echo "wheels: pip failed to install some of .whl/"
  else  # a wheel is a zip laid out for site-packages
    for wheel in .whl/*.whl; do "$python" -m zipfile -e "$wheel" "$work/site"; done
  fi
  echo "wheels: $(compgen -G ".whl/*.whl" | wc -l) from .whl/ in $work/site"
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

part() {  # part NAME LIMIT COMMAND...: run it under its own limit, unless it would overrun the budget
  local name=$1 limit=$2 left=$((budget - (SECONDS - started))) begin=$SECONDS status verdict line
  shift 2
  if [ "$limit" -gt "$left" ]; then
    line="== $name: skipped, it may take ${limit} s and ${left} s of the ${budget} s budget are left, exit skipped"
  else
    echo "-- $name (limit ${limit} s): $*"
    timeout -k 10 "$limit" "$@"
    status=$?
    case $status in
      0) verdict=ok ;;
      124 | 137) verdict="stopped at its limit" ;;
      *) verdict=failed ;;
    esac
    line="== $name: $verdict in $((SECONDS - begin)) s (limit ${limit} s), exit $status"
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
    local model=$work/tiny-model e2e=(--tiny --ready-timeout 150 --job-timeout 150) long=240 short=180
    echo "gpu: none (TINY=1: small shapes on the CPU; its figures mean nothing)"
  else
    local model=$work/model e2e=() long=200 short=60
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
  fi
  part preflight 120 "$python" bench/preflight.py
  if [ "$tiny" = 1 ]; then
    part model "$long" "$python" bench/full_size_model.py --out "$model" --size tiny --json "$json/model.json"
  else
    part model 150 "$python" bench/full_size_model.py --out "$model" --size full --json "$json/model.json"
  fi
  part e2e-resident "$long" "$python" bench/worker_e2e.py --model "$model" "${e2e[@]}" --jobs i2v,t2v \
    --json "$json/e2e-resident.json"
  part e2e-10gib "$long" "$python" bench/worker_e2e.py --model "$model" "${e2e[@]}" --jobs i2v \
    --memory-cap-gib 10 --json "$json/e2e-10gib.json"
  if [ "$tiny" = 1 ]; then
    # flex_attention uncompiled: torch.compile takes ~40 s on a cold CPU cache, and the compiled
    # path is checked against the reference by tests/adapters/test_vsa_kernels.py.
    part attention "$short" env TORCHDYNAMO_DISABLE=1 "$python" bench/attention.py --grid 3,8,8 --heads 2 \
      --head-dim 32 --runs 2
    part steps "$long" "$python" bench/gpu_generate.py --tiny --profiles resident --attention dense,vsa \
      --runs 1 --frames 5 --no-decode-rows --json "$json/steps.json"
    part decode "$short" "$python" bench/decode_encode.py --frames 5 --width 128 --height 128 --runs 1 \
      --json "$json/decode.json"
  else
    part attention "$short" "$python" bench/attention.py --runs 10
    part steps 210 "$python" bench/gpu_generate.py --profiles resident --attention dense,vsa --runs 1 \
      --no-decode-rows --budget-s 170 --json "$json/steps.json"
    part decode 150 "$python" bench/decode_encode.py --gpu --runs 2 --json "$json/decode.json"
  fi
  part e2e-16gib "$long" "$python" bench/worker_e2e.py --model "$model" "${e2e[@]}" --jobs i2v \
    --memory-cap-gib 16 --json "$json/e2e-16gib.json"
  part e2e-24gib "$long" "$python" bench/worker_e2e.py --model "$model" "${e2e[@]}" --jobs i2v \
    --memory-cap-gib 24 --json "$json/e2e-24gib.json"
  echo "gpu session: done in $((SECONDS - started)) s; results in $out/results.json, everything in $out/session.log"
}

session 2>&1 | tee "$out/session.log"
