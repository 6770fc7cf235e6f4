# Shared by the example scripts (sourced): `build_maos` builds the `maos` binary in release
# mode and sets $maos to its path — wherever cargo puts it, CARGO_TARGET_DIR included. With
# MAOS_BIN set (the tests), that binary is used as it is.
build_maos() {
    if [ -n "${MAOS_BIN:-}" ]; then
        maos=$MAOS_BIN
        return
    fi
    echo "== building maos"
    maos=$(cargo build --quiet --release -p maos-cli --message-format=json-render-diagnostics |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "maos":
        print(m["executable"])')
    if [ ! -x "$maos" ]; then
        echo "could not find the maos binary cargo built" >&2
        exit 1
    fi
}
