#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl, etcd and the controlplane launcher from Go modules into a cache
# directory outside the checkout, and prints that directory on the last stdout line.
#
#   tests/controlplane/build.sh              build if needed, print the bin dir
#   tests/controlplane/build.sh --print-dir  only print the bin dir (built or not)
#
# The directory name holds the kubernetes version and a hash of everything that goes
# into the binaries, so an edit rebuilds and unchanged sources reuse the binaries at
# once. Progress goes to stderr; stdout carries only the directory.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

kube_version=$(sed -n 's/^\(require\)\{0,1\}[[:space:]]*k8s\.io\/kubernetes[[:space:]]\+\(v[^[:space:]]*\).*/\2/p' go.mod)
if [[ ! $kube_version =~ ^v1\.([0-9]+)\.([0-9]+)$ ]]; then
	echo "build.sh: no k8s.io/kubernetes version found in ${here}/go.mod" >&2
	exit 1
fi
kube_minor=${BASH_REMATCH[1]}

# Everything that changes the binaries: the Go toolchain, module files, our Go sources
# and this script.
hash=$({
	go version
	find go.mod go.sum build.sh cmd -type f \( -name '*.go' -o -name 'go.*' -o -name '*.sh' \) -print0 |
		LC_ALL=C sort -z | xargs -0 sha256sum
} | sha256sum | cut -c1-12)
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/extsvc/controlplane
bin_dir=${cache_root}/${kube_version}-${hash}
binaries=(kube-apiserver kube-controller-manager kubectl etcd controlplane)

if [[ ${1:-} == --print-dir ]]; then
	echo "$bin_dir"
	exit 0
elif [[ $# -gt 0 ]]; then
	echo "usage: $0 [--print-dir]" >&2
	exit 2
fi

built() {
	local b
	for b in "${binaries[@]}"; do
		[[ -x ${bin_dir}/${b} ]] || return 1
	done
}

if built; then
	echo "build.sh: control plane binaries up to date in ${bin_dir}" >&2
	echo "$bin_dir"
	exit 0
fi

# Test binaries may call this script concurrently: one builds, the others wait.
mkdir -p "$cache_root"
exec 9>"${cache_root}/.build.lock"
if ! flock -n 9; then
	echo "build.sh: another build is running; waiting for ${cache_root}/.build.lock" >&2
	flock 9
fi
if built; then
	echo "build.sh: control plane binaries up to date in ${bin_dir}" >&2
	echo "$bin_dir"
	exit 0
fi

export CGO_ENABLED=0
# go.mod's go line may not pull a newer toolchain: there is no download on our machines.
export GOTOOLCHAIN=local

packages=(
	k8s.io/kubernetes/cmd/kube-apiserver
	k8s.io/kubernetes/cmd/kube-controller-manager
	k8s.io/kubernetes/cmd/kubectl
	./cmd/etcd
	./cmd/controlplane
)
# What `kube-apiserver --version` and GET /version report; without these it says v0.0.0.
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X ${pkg}.gitVersion=${kube_version} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${kube_minor}"
	ldflags+=" -X ${pkg}.gitTreeState=clean"
done

start=$SECONDS
echo "build.sh: building kube-apiserver, kube-controller-manager and kubectl ${kube_version}, etcd and the launcher into ${bin_dir}" >&2
echo "build.sh: $(go version); GOMODCACHE=$(go env GOMODCACHE) GOCACHE=$(go env GOCACHE)" >&2

tmp_dir=$(mktemp -d "${cache_root}/.build.XXXXXX")
deps=${tmp_dir}/deps
log=${tmp_dir}/go-build.log
heartbeat=
cleanup() {
	if [[ -n $heartbeat ]]; then kill "$heartbeat" 2>/dev/null || true; fi
	rm -rf "$tmp_dir"
}
trap cleanup EXIT

# A line every 15 s so that a cold build is never minutes of silence. `go build -v`
# names each package as it compiles it, which gives the count. The sleep is killed
# with the loop so that no process is left holding a caller's pipe open.
(
	trap 'kill "$nap" 2>/dev/null; exit 0' TERM
	while true; do
		sleep 15 &
		nap=$!
		wait "$nap"
		if [[ -e $log ]]; then
			echo "build.sh: $((SECONDS - start))s elapsed, $(grep -vc '^#' "$log" || true) of up to $(wc -l <"$deps") packages compiled"
		else
			echo "build.sh: $((SECONDS - start))s elapsed, resolving packages and downloading modules"
		fi
	done
) >&2 &
heartbeat=$!

echo "build.sh: resolving packages (a first run downloads ~1 GB of modules through the proxy)" >&2
go list -deps "${packages[@]}" >"${deps}.part"
mv "${deps}.part" "$deps"
echo "build.sh: compiling up to $(wc -l <"$deps") packages (cold: many minutes on 2 cores)" >&2

if ! go build -v -trimpath -ldflags "$ldflags" -o "${tmp_dir}/" "${packages[@]}" 2>"$log"; then
	echo "build.sh: go build failed; last lines of its output:" >&2
	tail -n 40 "$log" >&2
	exit 1
fi
kill "$heartbeat" 2>/dev/null || true
heartbeat=

for b in "${binaries[@]}"; do
	if [[ ! -x ${tmp_dir}/${b} ]]; then
		echo "build.sh: go build produced no ${b}" >&2
		exit 1
	fi
done
rm -f "$log" "$deps"
chmod 755 "$tmp_dir" # mktemp made it private
rm -rf "$bin_dir"
mv "$tmp_dir" "$bin_dir"
echo "build.sh: built in $((SECONDS - start))s: $(du -sh "$bin_dir" | cut -f1) in ${bin_dir}" >&2
# Every source edit makes a new directory of ~130 MB; keep the three newest.
find "$cache_root" -mindepth 1 -maxdepth 1 -type d -name 'v*-*' -printf '%T@ %p\n' |
	sort -rn | tail -n +4 | cut -d' ' -f2- | while read -r old; do
	echo "build.sh: removing old build ${old}" >&2
	rm -rf "$old"
done
echo "$bin_dir"
