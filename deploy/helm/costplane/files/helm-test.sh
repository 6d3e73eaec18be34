# `helm test`: sends one span to costplane over OTLP/HTTP (JSON) and reads
# it back through the API. The image has no curl; bash's /dev/tcp speaks
# the one HTTP request, and `costplane sql` reads through the API with the
# admin key. Needs OTLP_HTTP_HOST, OTLP_HTTP_PORT, COSTPLANE_SERVER and
# COSTPLANE_API_KEY; ATTEMPTS (default 60, 2 s apart) bounds the wait.
set -euo pipefail
hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
trace_id=$(hex 16)
span_id=$(hex 8)
end=$(date +%s%N)
start=$((end - 1000000))
body=$(printf '{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"costplane-helm-test"}}]},"scopeSpans":[{"scope":{"name":"helm-test"},"spans":[{"traceId":"%s","spanId":"%s","name":"helm test","kind":1,"startTimeUnixNano":"%s","endTimeUnixNano":"%s"}]}]}]}' \
  "$trace_id" "$span_id" "$start" "$end")
exec 3<>"/dev/tcp/$OTLP_HTTP_HOST/$OTLP_HTTP_PORT"
printf 'POST /v1/traces HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
  "$OTLP_HTTP_HOST" "${#body}" "$body" >&3
status=$(head -n 1 <&3 | tr -d '\r')
exec 3<&-
case "$status" in
  *" 200 "*) echo "sent trace $trace_id: $status" ;;
  *) echo "OTLP/HTTP answered: $status" >&2; exit 1 ;;
esac
# The span is stored after the next flush (pipeline.flush_interval); a
# failing query (server restarting, wrong key) is retried too.
count="" last_error=""
for _ in $(seq 1 "${ATTEMPTS:-60}"); do
  if out=$(costplane sql --server "$COSTPLANE_SERVER" --data-dir /nonexistent --format csv \
    "SELECT count(*) AS n FROM otel_traces WHERE TraceId = '$trace_id'" 2>&1); then
    count=$(printf '%s\n' "$out" | tail -n 1)
    if [ "$count" = 1 ]; then
      echo "read trace $trace_id back through the API"
      exit 0
    fi
  else
    last_error=$out
  fi
  sleep 2
done
echo "trace $trace_id was not readable through the API (last count: ${count:-none}; last error: ${last_error:-none})" >&2
exit 1
