#!/bin/sh
# Healthcheck of the lab's test app (see app.sh). Probe 127.0.0.1 (static
# busybox cannot resolve names) and do not pass wget -T: Debian's static
# busybox wget segfaults (exit 139) with it. Docker's --timeout bounds it.
tag=${APP_TAG:-v1}
mode=${APP_MODE:-$tag}
port=${APP_PORT:-8080}

case $mode in
    unhealthy)
        echo "unhealthy by design"
        exit 1 ;;
    sick)
        started=$(cat /tmp/started 2>/dev/null || echo 0)
        if [ $(( $(date +%s) - started )) -ge "${APP_SICK_AFTER_SECONDS:-8}" ]; then
            echo "sick: unhealthy since ${APP_SICK_AFTER_SECONDS:-8}s after start"
            exit 1
        fi ;;
esac
# flaky fails a share of `GET /` by design: its healthcheck asks /healthz
path=/
[ "$mode" = flaky ] && path=/healthz
exec wget -q -O /dev/null "http://127.0.0.1:$port$path"
