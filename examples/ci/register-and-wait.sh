#!/bin/sh
# Registers one ExternalService from a manifest and waits until it is ready, with curl
# alone (no extsvc binary, no jq, no python): for CI images that have a POSIX shell and
# curl, such as alpine with `apk add curl`.
#
#   EXTSVC_SERVER=https://extsvc.example.com EXTSVC_TOKEN=... EXTSVC_NAMESPACE=payments \
#     sh register-and-wait.sh deploy/external-services/billing-db.yaml billing-db
#
# $1  the manifest, YAML (or JSON when it ends in .json), one document, its
#     metadata.name equal to $2 and no metadata.namespace
# $2  the service's name
# EXTSVC_SERVER     the API's URL (required)
# EXTSVC_TOKEN      a bearer token that may write in the namespace (required)
# EXTSVC_NAMESPACE  the namespace (default: default)
# WAIT_TIMEOUT      seconds to wait for every address to be ready (default: 120)
#
# It PUTs the manifest (create or replace), then long-polls
# GET .../{name}?waitFor=ready in polls of at most 50 s (under the idle timeout of most
# proxies) until WAIT_TIMEOUT passes, and prints the service's health either way.
# Exit codes, as the extsvc CLI's: 0 ready; 1 any other error; 2 bad usage; 3 invalid
# manifest; 4 not found; 5 unauthenticated or forbidden; 6 conflict; 7 not ready in time;
# 8 server unreachable.
set -eu

die() {
    code=$1
    shift
    echo "error: $*" >&2
    exit "$code"
}

[ $# -eq 2 ] || die 2 "usage: $0 MANIFEST NAME (with EXTSVC_SERVER, EXTSVC_TOKEN, EXTSVC_NAMESPACE and WAIT_TIMEOUT in the environment)"
manifest=$1
name=$2
namespace=${EXTSVC_NAMESPACE:-default}
timeout=${WAIT_TIMEOUT:-120}
[ -n "${EXTSVC_SERVER:-}" ] || die 2 "set EXTSVC_SERVER to the URL of the extsvc API"
[ -n "${EXTSVC_TOKEN:-}" ] || die 2 "set EXTSVC_TOKEN to a token that may write in $namespace"
[ -r "$manifest" ] || die 3 "cannot read the manifest $manifest"
case $name in '' | *[!a-z0-9-]*) die 2 "the name must be a DNS label: $name" ;; esac
case $namespace in '' | *[!a-z0-9-]*) die 2 "the namespace must be a DNS label: $namespace" ;; esac
case $timeout in '' | *[!0-9]*) die 2 "WAIT_TIMEOUT must be a whole number of seconds: $timeout" ;; esac
case $manifest in
*.json) content_type=application/json ;;
*) content_type=application/yaml ;;
esac

server=${EXTSVC_SERVER%/}
item="$server/api/v1/namespaces/$namespace/external-services/$name"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
body="$work/body"
last="$work/last"
# The token goes to curl in a file only this user reads, not on its command line (which
# any process on the runner can see).
headers="$work/headers"
(umask 077 && printf 'Authorization: Bearer %s\n' "$EXTSVC_TOKEN" >"$headers")

# request METHOD URL SECONDS [CURL_ARGS...]: sets $status to the HTTP status and leaves
# the body in $body; fails, saying so, when no answer comes (unreachable, or too slow).
request() {
    method=$1
    url=$2
    seconds=$3
    shift 3
    : >"$body"
    if status=$(curl --silent --show-error --max-time "$seconds" -X "$method" \
        -H "@$headers" -H 'Accept: application/json' \
        -o "$body" -w '%{http_code}' "$@" "$url"); then
        return 0
    else
        echo "error: $method $url: no answer (curl exit code $?)" >&2
        return 1
    fi
}

# The exit code for a refusal with HTTP status $1, as the CLI's.
exit_code() {
    case $1 in
    400 | 413 | 415 | 422) echo 3 ;;
    401 | 403) echo 5 ;;
    404) echo 4 ;;
    409 | 412) echo 6 ;;
    408) echo 7 ;;
    *) echo 1 ;;
    esac
}

# Prints the body of the last answer, a problem document as the server sent it.
show_body() {
    if [ -s "$body" ]; then
        cat "$body"
        echo
    fi
}

# Each string of the "unmet" array in the JSON file $1, one a line, indented.
unmet() {
    awk '
        { text = text $0 }
        END {
            if (!match(text, /"unmet"[ \t\r]*:[ \t\r]*\[/)) exit 1
            rest = substr(text, RSTART + RLENGTH)
            out = ""; inside = 0; n = 0
            for (i = 1; i <= length(rest); i++) {
                c = substr(rest, i, 1)
                if (!inside) {
                    if (c == "\"") { inside = 1; out = "" }
                    else if (c == "]") break
                } else if (c == "\\") {
                    i++; c = substr(rest, i, 1)
                    if (c == "n" || c == "t") c = " "
                    else if (c == "u") { c = "\\u" substr(rest, i + 1, 4); i += 4 }
                    out = out c
                } else if (c == "\"") {
                    print "  " out; n++; inside = 0
                } else out = out c
            }
            exit (n == 0)
        }' "$1"
}

# Prints GET .../health as the server sends it (JSON), after a one-line summary.
show_health() {
    request GET "$item/health" 30 || return 0
    if [ "$status" != 200 ]; then
        echo "could not read the health of $namespace/$name (HTTP $status):"
        show_body
        return 0
    fi
    ready=$(sed -n 's/.*"readyAddresses"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$body")
    total=$(sed -n 's/.*"totalAddresses"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$body")
    case $total in
    '') echo "health of $namespace/$name:" ;;
    # The probe engine reports only on services with health checks, once it has run them.
    0) echo "health of $namespace/$name: no health check has reported on it" ;;
    *) echo "health of $namespace/$name: $ready of $total addresses ready" ;;
    esac
    show_body
}

# 1. Create or replace.
request PUT "$item" 60 -H "Content-Type: $content_type" --data-binary "@$manifest" || exit 8
case $status in
201) echo "$namespace/$name created" ;;
200) echo "$namespace/$name configured (or unchanged)" ;;
*)
    echo "error: PUT $item refused the manifest $manifest (HTTP $status):" >&2
    show_body >&2
    exit "$(exit_code "$status")"
    ;;
esac

# 2. Wait, one long poll after another, until ready or the deadline (at least one look,
#    even with WAIT_TIMEOUT=0).
deadline=$(($(date +%s) + timeout))
while :; do
    left=$((deadline - $(date +%s)))
    [ "$left" -ge 0 ] || left=0
    poll=$left
    [ "$poll" -le 50 ] || poll=50
    # curl waits for the server's answer to the poll, and some more.
    request GET "$item?waitFor=ready&timeout=$poll" $((poll + 15)) || exit 8
    case $status in
    200)
        echo "$namespace/$name is ready"
        show_health
        exit 0
        ;;
    408)
        # Not ready when that poll ended: keep why, and poll again while time is left.
        cp "$body" "$last"
        ;;
    503)
        # Too many waits open on that server: try again in a second.
        cp "$body" "$last"
        sleep 1
        ;;
    *)
        echo "error: waiting for $namespace/$name failed (HTTP $status):" >&2
        show_body >&2
        exit "$(exit_code "$status")"
        ;;
    esac
    [ $((deadline - $(date +%s))) -gt 0 ] || break
done

# 3. Timed out.
echo "error: $namespace/$name is not ready after $timeout s; why:" >&2
if [ ! -s "$last" ] || ! unmet "$last" >&2; then
    echo "  (no reason given)" >&2
fi
if [ -s "$last" ]; then
    echo "the server's last answer (\"current\" is the service as it stood):" >&2
    cat "$last" >&2
    echo >&2
fi
show_health
exit 7
