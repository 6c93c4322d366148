# Shared by start.sh and test.sh: install, idempotently, what building the web app needs, without letting
# trunk download any binary (see ../shared/TOOLCHAIN.md for why each pin is what it is).
# Source it from the repository root.

TRUNK_VERSION=0.21.14
export PATH="$HOME/.cargo/bin:$PWD/tools/node_modules/.bin:$PATH"
# Trunk must use the tools installed here and fail loudly rather than fetch its own.
export TRUNK_OFFLINE=true TRUNK_SKIP_VERSION_CHECK=true

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# The wasm-bindgen version in Cargo.lock: the CLI must match the library exactly.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

ensure_build_tools() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  if ! trunk --version 2>/dev/null | grep -q " $TRUNK_VERSION"; then
    say "installing trunk $TRUNK_VERSION (several minutes, once)"
    cargo install --locked trunk --version "$TRUNK_VERSION"
  fi
  local wb
  wb=$(wasm_bindgen_version)
  if ! wasm-bindgen --version 2>/dev/null | grep -q " $wb"; then
    say "installing wasm-bindgen-cli $wb (a few minutes, once)"
    # Not --locked: its lockfile wants a crate version the index may lack; --version pins it anyway.
    cargo install wasm-bindgen-cli --version "$wb" --force
  fi
  # The release build writes a brotli copy of each file (scripts/precompress.sh).
  command -v brotli >/dev/null || apt_install brotli
  if [ ! -x tools/node_modules/.bin/wasm-opt ] || [ ! -x tools/node_modules/.bin/terser ]; then
    say "installing wasm-opt (binaryen 132) and terser, from npm"
    (cd tools && npm ci --no-audit --no-fund)
  fi
}

build_frontend() {
  say "building the web app (release)"
  trunk build --release
}

ensure_test_tools() {
  local packages=()
  command -v chromium >/dev/null || packages+=(chromium)
  command -v chromedriver >/dev/null || packages+=(chromium-driver)
  # The Redis mode's tests start real redis-server processes.
  command -v redis-server >/dev/null || packages+=(redis-server)
  if [ ${#packages[@]} -gt 0 ]; then apt_install "${packages[@]}"; fi
}

apt_install() {
  say "installing $* (Debian packages)"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}
