#!/usr/bin/env bash
# Entrypoint of the FastWan worker image: one image, two ways of getting jobs.
#
#   WORKER_MODE=queue (default)  SaladCloud. Salad's job-queue binary (salad-http-job-queue-worker)
#                                pulls jobs and POSTs them to the queue worker (fastwan-queue-worker,
#                                FastAPI on :${PORT:-8000}). Both run side by side; when either exits
#                                this script stops the other and exits with the status of the one
#                                that exited first. A container that keeps running with one half
#                                dead would look healthy to Salad while doing no work, so one dying
#                                ends both.
#                                SIGTERM/SIGINT drain: the app is stopped first (it answers the job
#                                in hand within SHUTDOWN_GRACE_S, 503 to any other) while the binary
#                                keeps running, because on a signal the binary drops the request in
#                                flight and completes a job only while it runs. Once the app has
#                                exited, the binary has SALAD_HANDOFF_S to report the answer, then
#                                gets SIGTERM. A second signal stops both at once.
#   WORKER_MODE=buffer           Vast.ai / local. Execs the supervisor (fastwan-buffer-supervisor),
#                                which runs one buffer worker (fastwan-buffer-worker) per GPU
#                                (BUFFER_WORKERS=auto|N) and restarts a worker that exits 1 or is
#                                killed by a signal it did not send, with backoff (1 s doubling to
#                                60 s; BUFFER_RESTART_BACKOFF_S sets the first wait): Vast restarts
#                                nothing. A worker's exit 2 (a bad setting) ends the container with 2.
#                                SIGTERM/SIGINT reach every worker; each finishes as it would alone.
#                                It is Python, not this script, so that its rules are unit-tested.
#
#   SALAD_QUEUE_WORKER=on|off    Salad's binary only works on a SaladCloud node (it talks to the
#                                node's local job service), so local tests of queue mode set it to
#                                "off" to run the queue worker alone. Default "on": a missing binary
#                                is then an error, never a silently idle container.
#   STOP_TIMEOUT_S               Seconds to wait for a process asked to stop (the app after SIGTERM,
#                                the remaining one once the other has exited; buffer mode: the
#                                workers after SIGTERM), before SIGKILL. Default: SHUTDOWN_GRACE_S (25)
#                                rounded up, + 10, so a job that can still finish in its grace is not
#                                cut short.
#   SALAD_HANDOFF_S              Queue mode, after a stop signal: seconds Salad's binary keeps running
#                                once the app has exited, to report the job the app answered last
#                                (whole seconds; default 5). Ends early if the binary exits.
#
# Exit status (README "Exit status", fastwan_adapters.exit_code.ExitCode: 0 stopped as asked,
# 1 restart-worthy, 2 a bad setting): that of the process that exited first (queue mode) or of
# the supervisor (the first non-zero status a buffer worker ended with, else 0);
# 2 for a bad setting; 127 when a program the mode needs is not on PATH.
set -euo pipefail

readonly SCRIPT_NAME="run_fastwan_worker"
readonly SALAD_BIN="salad-http-job-queue-worker"
readonly QUEUE_BIN="fastwan-queue-worker"
readonly BUFFER_BIN="fastwan-buffer-worker"
readonly SUPERVISOR_BIN="fastwan-buffer-supervisor"

log() {
  printf '%s: %s\n' "${SCRIPT_NAME}" "$*" >&2
}

die() {
  local status="$1"
  shift
  log "error: $*"
  exit "${status}"
}

require_program() {
  command -v "$1" >/dev/null 2>&1 || die 127 "$1 not found on PATH ($2)"
}

# Printed once at start-up: the first thing to read when a node misbehaves. A host without a GPU
# (or without nvidia-smi) still starts, and the worker itself reports what it finds. A driver in
# trouble can leave nvidia-smi hanging: it gets NVIDIA_SMI_TIMEOUT_S, then SIGTERM (SIGKILL 2 s on).
readonly NVIDIA_SMI_TIMEOUT_S=10
print_gpu_diagnostics() {
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    log "GPU: nvidia-smi not found; no GPU diagnostics"
    return 0
  fi
  local status=0
  timeout -k 2 "${NVIDIA_SMI_TIMEOUT_S}" nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader || status=$?
  if ((status == 124 || status == 137)); then
    log "GPU: nvidia-smi did not answer within ${NVIDIA_SMI_TIMEOUT_S}s; starting anyway"
  elif ((status != 0)); then
    log "GPU: nvidia-smi failed with status ${status}; starting anyway"
  fi
}

# pid -> 1 once it has been sent SIGTERM: a second SIGTERM makes uvicorn abandon its graceful
# shutdown, which would cut short the job the first one let finish.
declare -A signalled=()
app_pid=""
salad_pid=""
stop_requested=0

terminate() {
  local pid
  for pid in "$@"; do
    if [[ -n "${pid}" && -z "${signalled[${pid}]:-}" ]]; then
      signalled[${pid}]=1
      kill -TERM "${pid}" 2>/dev/null || true
    fi
  done
}

# SIGINT and SIGHUP are forwarded as SIGTERM: children started in the background by a
# non-interactive shell ignore SIGINT, and both programs treat SIGTERM as "finish up and exit".
# The first signal goes to the app alone (see the header: the binary must outlive the answer);
# a second one to both.
# shellcheck disable=SC2317 # called by the traps set in run_queue_mode
on_stop_signal() {
  if ((stop_requested)); then
    log "received $1 again; stopping ${SALAD_BIN} too"
    terminate "${app_pid}" "${salad_pid}"
    return
  fi
  stop_requested=1
  log "received $1; stopping ${QUEUE_BIN} first (it answers the job in hand); ${SALAD_BIN} keeps running until it has exited"
  terminate "${app_pid}"
}

# Returns 0 once pid has exited, 1 if it still runs after timeout_s (whole seconds).
exits_within() {
  local pid="$1" ticks=$(($2 * 10))
  while kill -0 "${pid}" 2>/dev/null && ((ticks > 0)); do
    sleep 0.1
    ticks=$((ticks - 1))
  done
  ! kill -0 "${pid}" 2>/dev/null
}

# Waits up to STOP_TIMEOUT_S for a process that was asked to stop, then kills it, so that a child
# ignoring SIGTERM cannot keep a half-dead container alive forever. Sets exit_status to its status.
exit_status=0
await_exit() {
  local pid="$1" name="$2" timeout_s="$3"
  if ! exits_within "${pid}" "${timeout_s}"; then
    log "${name} still running ${timeout_s}s after SIGTERM; sending SIGKILL"
    kill -KILL "${pid}" 2>/dev/null || true
  fi
  exit_status=0
  wait "${pid}" 2>/dev/null || exit_status=$?
}

# After a stop signal: the app answers the job in hand and exits, then the binary, once it had
# SALAD_HANDOFF_S to report that answer (it only completes a job while it runs).
drain_queue_mode() {
  local stop_timeout_s="$1" handoff_s="$2"
  await_exit "${app_pid}" "${QUEUE_BIN}" "${stop_timeout_s}"
  local status="${exit_status}"
  log "${QUEUE_BIN} exited with status ${status}; ${SALAD_BIN} has ${handoff_s}s to report its last answer"
  if ! exits_within "${salad_pid}" "${handoff_s}"; then
    terminate "${salad_pid}"
  fi
  await_exit "${salad_pid}" "${SALAD_BIN}" "${stop_timeout_s}"
  log "exiting with status ${status}"
  exit "${status}"
}

# SALAD_HANDOFF_S: whole seconds, 5 by default.
salad_handoff() {
  local value="${SALAD_HANDOFF_S:-5}"
  [[ "${value}" =~ ^[0-9]+$ ]] || die 2 "SALAD_HANDOFF_S must be a whole number of seconds, got '${value}'"
  echo "$((10#${value}))"
}

# STOP_TIMEOUT_S, or SHUTDOWN_GRACE_S (which the workers read as a number of seconds, 25 by
# default, fractions allowed) rounded up, plus 10.
stop_timeout() {
  if [[ -n "${STOP_TIMEOUT_S:-}" ]]; then
    [[ "${STOP_TIMEOUT_S}" =~ ^[0-9]+$ ]] \
      || die 2 "STOP_TIMEOUT_S must be a whole number of seconds, got '${STOP_TIMEOUT_S}'"
    echo "$((10#${STOP_TIMEOUT_S}))"
    return
  fi
  local grace="${SHUTDOWN_GRACE_S:-25}"
  [[ "${grace}" =~ ^([0-9]+)([.]([0-9]*))?$ ]] \
    || die 2 "SHUTDOWN_GRACE_S must be a number of seconds, got '${grace}'"
  local whole=$((10#${BASH_REMATCH[1]})) fraction="${BASH_REMATCH[3]}"
  if [[ "${fraction}" =~ [1-9] ]]; then
    whole=$((whole + 1))
  fi
  echo "$((whole + 10))"
}

run_queue_mode() {
  local salad_switch="${SALAD_QUEUE_WORKER:-on}"
  case "${salad_switch}" in
    on) ;;
    off)
      require_program "${QUEUE_BIN}" "the fastwan-queue-worker distribution is not installed"
      log "SALAD_QUEUE_WORKER=off: running ${QUEUE_BIN} alone (local testing; no jobs come from Salad)"
      exec "${QUEUE_BIN}" "$@"
      ;;
    *) die 2 "SALAD_QUEUE_WORKER must be 'on' or 'off', got '${salad_switch}'" ;;
  esac

  require_program "${SALAD_BIN}" "queue mode needs SaladCloud's job queue worker, which the image installs in /usr/local/bin unless it was built with SALAD_QUEUE_WORKER_VERSION=none (as the CPU twin is); to run the queue worker alone for local testing, set SALAD_QUEUE_WORKER=off"
  require_program "${QUEUE_BIN}" "the fastwan-queue-worker distribution is not installed"

  local stop_timeout_s handoff_s
  stop_timeout_s="$(stop_timeout)"
  handoff_s="$(salad_handoff)"

  trap 'on_stop_signal SIGTERM' TERM
  trap 'on_stop_signal SIGINT' INT
  trap 'on_stop_signal SIGHUP' HUP # its default action would end this script alone, not the two

  # The app first: it starts loading the model while Salad's binary waits for /ready.
  "${QUEUE_BIN}" "$@" &
  app_pid=$!
  "${SALAD_BIN}" &
  salad_pid=$!
  log "started ${QUEUE_BIN} (pid ${app_pid}) and ${SALAD_BIN} (pid ${salad_pid}); stop timeout ${stop_timeout_s}s"
  if ((stop_requested)); then # the signal came before both pids were known
    terminate "${app_pid}"
  fi

  local exited_pid="" status=0
  while [[ -z "${exited_pid:-}" ]] && ((!stop_requested)); do
    status=0
    # Returns early (with exited_pid unset) when a trapped signal arrives.
    wait -n -p exited_pid "${app_pid}" "${salad_pid}" || status=$?
  done
  if [[ -z "${exited_pid:-}" ]]; then
    drain_queue_mode "${stop_timeout_s}" "${handoff_s}"
  fi

  local exited_name="${SALAD_BIN}" other_pid="${app_pid}" other_name="${QUEUE_BIN}"
  if [[ "${exited_pid}" == "${app_pid}" ]]; then
    exited_name="${QUEUE_BIN}" other_pid="${salad_pid}" other_name="${SALAD_BIN}"
  fi
  log "${exited_name} exited with status ${status}; stopping ${other_name}"
  terminate "${other_pid}"
  await_exit "${other_pid}" "${other_name}" "${stop_timeout_s}"
  log "exiting with status ${status}"
  exit "${status}"
}

main() {
  local mode="${WORKER_MODE:-queue}"
  case "${mode}" in
    queue | buffer) ;;
    *) die 2 "WORKER_MODE must be one of: queue, buffer (queue if unset), got '${mode}'" ;;
  esac
  if ((BASH_VERSINFO[0] < 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] < 1))); then
    die 2 "bash 5.1 or later is required (wait -n -p), found ${BASH_VERSION}"
  fi

  log "WORKER_MODE=${mode}"
  print_gpu_diagnostics

  if [[ "${mode}" == "buffer" ]]; then
    require_program "${BUFFER_BIN}" "the fastwan-buffer-worker distribution is not installed"
    require_program "${SUPERVISOR_BIN}" "the fastwan-buffer-worker distribution is not installed"
    local stop_timeout_s
    stop_timeout_s="$(stop_timeout)"
    export STOP_TIMEOUT_S="${stop_timeout_s}" # the supervisor's SIGKILL deadline, as in queue mode
    exec "${SUPERVISOR_BIN}" "$@"
  fi
  run_queue_mode "$@"
}

main "$@"
