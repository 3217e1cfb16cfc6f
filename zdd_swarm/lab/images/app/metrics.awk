# Request counters of the lab's test app, from busybox httpd's `-vv` log
# (read from a fifo, see app.sh): for each request httpd writes
# "<addr>:<port>: url:<path>" and then "<addr>:<port>: response:<code>"
# (a CGI writes its own response line in the same form, see index.cgi).
# Requests to /metrics and from 127.0.0.1 (healthchecks; httpd may name it
# ::ffff:127.0.0.1) are not counted.
# The counters are written to /www/metrics (Prometheus text format) at most
# once a second, through a rename, so that a scrape never reads half a file.

function flush(    tmp, code) {
    tmp = "/tmp/metrics.tmp"
    print "# HELP app_requests_total Requests answered, by release tag and HTTP status code." > tmp
    print "# TYPE app_requests_total counter" > tmp
    for (code in requests)
        printf "app_requests_total{tag=\"%s\",code=\"%s\"} %d\n", tag, code, requests[code] > tmp
    print "# HELP app_request_errors_total Requests answered with a 5xx status, by release tag." > tmp
    print "# TYPE app_request_errors_total counter" > tmp
    printf "app_request_errors_total{tag=\"%s\"} %d\n", tag, errors > tmp
    close(tmp)
    system("mv " tmp " /www/metrics")
    written = systime()
}

BEGIN { requests["200"] = 0; errors = 0; flush() }

$2 ~ /^url:/ { path[$1] = substr($2, 5); next }

$2 ~ /^response:/ {
    url = path[$1]; delete path[$1]
    if (url != "/metrics" && index($1, "127.0.0.1") == 0) {
        code = substr($2, 10)
        requests[code]++
        if (code ~ /^5/) errors++
    }
    if (systime() != written) flush()
}
