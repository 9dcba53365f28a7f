#!/usr/bin/env bash
# Builds the CPU twin of the FastWan image (docs/deploy.md, "The CPU twin"): the same
# docker/Dockerfile.fastwan, built by buildah without a Docker daemon, with only the arguments
# marked "twin" in it overridden: a Debian 12 base made here with debootstrap (no registry
# needed), its Python 3.11, locks/cpu.txt, the CPU torch wheel from CPU_TORCH_FIND_LINKS, and
# no Salad binary. `make image` runs it; tests/image/ runs the result.
#
# Cached, so that CI pays the cold build once per machine: the base image is made only when
# buildah's storage lacks it, and `--layers` keeps every step, so a code change rebuilds only
# the wheels and the last layers of the runtime stage.
#
# Needs root, buildah and debootstrap; installs the last two with apt-get when it can (root).
# Without them: a message and exit 0, so a workstation skips the image, but exit 1 under CI
# (CI set), so a CI machine that cannot build the image cannot pass silently.
#
#   TWIN_IMAGE            the image built (default localhost/fastwan-worker-twin:latest)
#   TWIN_BASE             the debootstrapped base (default localhost/fastwan-twin-base:bookworm)
#   DEBIAN_MIRROR         debootstrap's mirror (default http://deb.debian.org/debian)
#   CPU_TORCH_FIND_LINKS  the folder holding the CPU torch wheel (default /opt/wheels)
set -euo pipefail

readonly SCRIPT_NAME="build_twin"
readonly TWIN_IMAGE="${TWIN_IMAGE:-localhost/fastwan-worker-twin:latest}"
readonly TWIN_BASE="${TWIN_BASE:-localhost/fastwan-twin-base:bookworm}"
readonly DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
readonly WHEELS="${CPU_TORCH_FIND_LINKS:-/opt/wheels}"
# pip inside the build reaches the registry only through this machine's CA bundle.
readonly CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

log() {
  printf '%s: %s\n' "${SCRIPT_NAME}" "$*" >&2
}

# Outside CI a missing tool skips the image; under CI it is an error.
unavailable() {
  if [[ -n "${CI:-}" ]]; then
    log "error: $* (CI is set, so the image cannot be skipped)"
    exit 1
  fi
  log "skipped: $*; the image tests will be skipped (they fail under CI=true)"
  exit 0
}

ensure_tools() {
  if [[ "$(id -u)" != 0 ]]; then
    unavailable "building the twin needs root (buildah's chroot isolation and debootstrap)"
  fi
  local missing=()
  command -v buildah >/dev/null 2>&1 || missing+=(buildah)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  if ((${#missing[@]} == 0)); then
    return
  fi
  command -v apt-get >/dev/null 2>&1 || unavailable "${missing[*]} not installed and no apt-get to install them"
  log "installing ${missing[*]} from Debian"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
    unavailable "apt-get could not install ${missing[*]}"
  fi
}

# A Debian 12 root file system from Debian's own packages, imported as an image: the twin's
# stand-in for the CUDA base image, which no registry here serves.
ensure_base() {
  if buildah inspect --type image "${TWIN_BASE}" >/dev/null 2>&1; then
    log "base ${TWIN_BASE}: cached"
    return
  fi
  log "base ${TWIN_BASE}: debootstrap --variant=minbase bookworm (a few minutes, once per machine)"
  local rootfs
  rootfs="$(mktemp -d /var/tmp/fastwan-twin-base.XXXXXX)"
  # shellcheck disable=SC2064 # the path is fixed now, on purpose
  trap "rm -rf '${rootfs}'" EXIT
  # ca-certificates comes with the base, pinned to that version: a RUN that installs or upgrades
  # it would fail, its post-install script cannot replace the CA bundle mounted into the build.
  debootstrap --variant=minbase --include=ca-certificates bookworm "${rootfs}" "${DEBIAN_MIRROR}" \
    >"${rootfs}.log" 2>&1 \
    || { tail -n 20 "${rootfs}.log" >&2; rm -f "${rootfs}.log"; exit 1; }
  rm -f "${rootfs}.log"
  # As Debian's own images have it: updates and security updates too, and no package cache.
  cat >"${rootfs}/etc/apt/sources.list" <<EOF
deb ${DEBIAN_MIRROR} bookworm main
deb ${DEBIAN_MIRROR} bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  local ca_version
  ca_version="$(dpkg-query --admindir="${rootfs}/var/lib/dpkg" -W -f '${Version}' ca-certificates)"
  cat >"${rootfs}/etc/apt/preferences.d/twin-ca-certificates" <<EOF
Package: ca-certificates
Pin: version ${ca_version}
Pin-Priority: 1001
EOF
  rm -rf "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/lib/apt/lists/*
  local container mountpoint
  container="$(buildah from scratch)"
  mountpoint="$(buildah mount "${container}")"
  tar -C "${rootfs}" --numeric-owner -cf - . | tar -C "${mountpoint}" --numeric-owner -xpf -
  buildah umount "${container}" >/dev/null
  buildah config --cmd /bin/bash "${container}"
  buildah commit --rm "${container}" "${TWIN_BASE}" >/dev/null
  rm -rf "${rootfs}"
  trap - EXIT
  log "base ${TWIN_BASE}: imported"
}

# SOURCE_DIGEST (see the Dockerfile's wheels stage): what the image's last layers are built
# from, by name and content: the files under packages/ and apps/ that git tracks or would track
# (no caches, no egg-info; outside a git checkout, every file there), the Dockerfile, its
# .dockerignore and this script (whose build arguments change steps too).
source_digest() {
  local files
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    files="$(git ls-files --cached --others --exclude-standard -- packages apps | LC_ALL=C sort)"
  else
    files="$(find packages apps -type f -not -path '*/__pycache__/*' | LC_ALL=C sort)"
  fi
  files+=$'\n'"docker/Dockerfile.fastwan"$'\n'".dockerignore"$'\n'"docker/build_twin.sh"
  # Names and contents both: a renamed module changes the wheels too.
  while IFS= read -r file; do
    if [[ -f "${file}" ]]; then printf '%s %s\n' "$(sha256sum <"${file}" | cut -d ' ' -f 1)" "${file}"; fi
  done <<<"${files}" | sha256sum | cut -d ' ' -f 1
}

build() {
  [[ -f "${CA_BUNDLE}" ]] || unavailable "no CA bundle at ${CA_BUNDLE} for pip inside the build"
  compgen -G "${WHEELS}/torch-*+cpu-*.whl" >/dev/null \
    || unavailable "no CPU torch wheel in ${WHEELS} (CPU_TORCH_FIND_LINKS)"
  log "building ${TWIN_IMAGE} from docker/Dockerfile.fastwan"
  # --format docker keeps SHELL and HEALTHCHECK, which the OCI format drops.
  buildah bud --isolation chroot --layers --format docker \
    -f docker/Dockerfile.fastwan -t "${TWIN_IMAGE}" \
    -v "${CA_BUNDLE}:${CA_BUNDLE}:ro" \
    -v "${WHEELS}:/opt/wheels:ro" \
    --build-arg CUDA_BASE_IMAGE="${TWIN_BASE}" \
    --build-arg PYTHON=python3.11 \
    --build-arg PYTHON_VENV_PACKAGE=python3.11-venv \
    --build-arg LOCK_FILE=locks/cpu.txt \
    --build-arg TORCH_INDEX_URL=https://pypi.org/simple \
    --build-arg TORCH_FIND_LINKS=/opt/wheels \
    --build-arg TORCH_CUDA=none \
    --build-arg SALAD_QUEUE_WORKER_VERSION=none \
    --build-arg SOURCE_DIGEST="$(source_digest)" \
    .
  log "built ${TWIN_IMAGE}"
}

main() {
  cd "$(dirname "$0")/.."
  ensure_tools
  ensure_base
  build
}

main "$@"
