#!/bin/sh
# The lab's router (see Dockerfile): nginx or HAProxy in the foreground.
# On SIGTERM it keeps serving ROUTER_DRAIN_SECONDS (2), so that clients which
# resolved the task just before Swarm's DNS dropped it are still served,
# then stops gracefully (nginx: SIGQUIT, HAProxy's master: SIGUSR1), letting
# requests in flight finish.

drain=${ROUTER_DRAIN_SECONDS:-2}
child=

log() { echo "zdd-router[$ROUTER]: $*"; }

on_term() {
    log "SIGTERM: serving ${drain}s more, then stopping gracefully"
    sleep "$drain"
    if [ "$ROUTER" = haproxy ]; then kill -USR1 "$child"; else kill -QUIT "$child"; fi
    wait "$child"
    log "stopped"
    exit 0
}
trap on_term TERM INT

case $ROUTER in
    nginx) nginx -e stderr -c /etc/nginx/nginx.conf -g 'daemon off;' & ;;
    haproxy) haproxy -W -db -f /etc/haproxy/haproxy.cfg & ;;
    *) log "unknown ROUTER"; exit 2 ;;
esac
child=$!
log "started"
while :; do
    wait "$child"
    status=$?
    if ! kill -0 "$child" 2>/dev/null; then
        log "exited ($status)"
        exit 1
    fi
done
