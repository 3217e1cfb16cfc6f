#!/bin/sh
# `GET /` of the `flaky` release (APP_MODE=flaky, see app.sh): healthy, but
# APP_ERROR_PERCENT (20) % of requests are answered with HTTP 500. It writes
# its response line to httpd's log as httpd does (metrics.awk counts it).
# busybox httpd sends a "Status:" first line as the status line.
percent=${APP_ERROR_PERCENT:-20}
if [ $((RANDOM % 100)) -lt "$percent" ]; then
    code=500 status="500 Internal Server Error" body="error (flaky release $APP_TAG)"
else
    code=200 status="200 OK" body=$APP_TAG
fi
echo "$REMOTE_ADDR:$REMOTE_PORT: response:$code" >&2
printf 'Status: %s\r\nContent-Type: text/plain\r\n\r\n%s\n' "$status" "$body"
