#!/bin/sh
# The lab's test app: busybox httpd on :8080 whose `GET /` body is the image
# tag and a newline. APP_TAG (set at build time) picks the behaviour;
# APP_MODE overrides it at run time (e.g. `-e APP_MODE=crash`).
#
#   v1 v2 v3 nohc   serve; on SIGTERM keep serving APP_DRAIN_SECONDS (4), exit 0
#   slow slow-nohc  the same, but listen only after APP_SLOW_SECONDS (30)
#   abrupt          serve; on SIGTERM exit 143 at once (no drain)
#   unhealthy sick  serve (health.sh fails them: always / after 8 s); on
#                   SIGTERM exit 143 at once, so that Swarm records a task it
#                   killed for being unhealthy as failed ("non-zero exit (143):
#                   dockerexec: unhealthy container"); after a graceful exit 0
#                   it would record it as complete, with no error
#   crash           exit 1 about 1 s after start
#   flaky           serve and stay healthy, but answer APP_ERROR_PERCENT (20) %
#                   of `GET /` with HTTP 500 (a CGI, index.cgi); drain as v1
#
# Every tag counts its requests on /metrics (Prometheus text format, labelled
# with the tag): metrics.awk reads httpd's log from a fifo.
#
# PID 1 ignores signals it has no handler for, hence the trap.

tag=${APP_TAG:-v1}
mode=${APP_MODE:-$tag}
port=${APP_PORT:-8080}
drain=${APP_DRAIN_SECONDS:-4}
slow=${APP_SLOW_SECONDS:-30}
child=

log() { echo "zdd-app[$tag]: $*"; }

on_term() {
    if [ "$mode" = abrupt ] || [ "$mode" = unhealthy ] || [ "$mode" = sick ]; then
        log "SIGTERM: exiting at once"
        [ -n "$child" ] && kill -9 "$child" 2>/dev/null
        exit 143
    fi
    log "SIGTERM: serving ${drain}s more, then exiting"
    sleep "$drain"
    [ -n "$child" ] && kill "$child" 2>/dev/null
    log "drained, exit 0"
    exit 0
}
trap on_term TERM INT

mkdir -p /www /tmp
if [ "$mode" = flaky ]; then
    # no index.html: busybox httpd then runs /cgi-bin/index.cgi for `/`
    mkdir -p /www/cgi-bin
    cp /index.cgi /www/cgi-bin/index.cgi
    chmod 755 /www/cgi-bin/index.cgi
    echo ok > /www/healthz
else
    printf '%s\n' "$tag" > /www/index.html
fi
date +%s > /tmp/started

case $mode in
    crash)
        sleep 1
        log "crashing: exit 1"
        exit 1 ;;
    slow|slow-nohc)
        log "starting slowly: listening in ${slow}s"
        sleep "$slow" &
        wait $! ;;
esac

rm -f /tmp/httpd.log
mkfifo /tmp/httpd.log
awk -v tag="$tag" -f /metrics.awk < /tmp/httpd.log &
httpd -f -vv -p "$port" -h /www 2> /tmp/httpd.log &
child=$!
log "serving on :$port"
while :; do
    wait "$child"
    status=$?
    if ! kill -0 "$child" 2>/dev/null; then
        log "httpd exited ($status)"
        exit 1
    fi
done
