# Sourced by scripts that need programs from Debian's packages: `need_debian COMMAND PACKAGE`
# installs PACKAGE with apt-get when COMMAND is not on PATH. Idempotent; needs root or sudo. A fresh
# machine has none of these programs: the project's own scripts install them, never a person.
need_debian() {
    local command_name="$1" package="$2"
    if command -v "$command_name" >/dev/null 2>&1; then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$(basename "$0"): $command_name is missing and there is no apt-get to install" \
            "$package; install it by hand" >&2
        return 1
    fi
    local as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "$(basename "$0"): not root and no sudo; cannot install $package" >&2
            return 1
        fi
        as_root=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "${_tock_apt_updated:-}" ]; then
        "${as_root[@]}" apt-get update -qq
        _tock_apt_updated=1
    fi
    "${as_root[@]}" apt-get install -y -qq "$package" >/dev/null
    command -v "$command_name" >/dev/null
}
