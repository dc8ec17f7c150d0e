# expect_error.sh — sourced by the data error tests. Needs $t (a scratch directory) and $fail.
# expect_error NAME PATTERN CMD...: CMD must exit non-zero and print PATTERN (grep -E) on stderr.
expect_error() {
    local name=$1 pattern=$2
    shift 2
    "$@" >"$t/out" 2>"$t/err"
    local rc=$?
    if [ $rc = 0 ]; then
        echo "FAIL $name: exit 0"; fail=1
    elif ! grep -Eq -e "$pattern" "$t/err"; then
        echo "FAIL $name: stderr lacks /$pattern/:"; cat "$t/err"; fail=1
    else
        echo "ok   $name: $(grep -m1 error "$t/err" || head -1 "$t/err")"
    fi
}
