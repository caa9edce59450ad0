-- wrk script for bench/run.sh: prints one machine-readable line with exact totals when the
-- run ends. The human-readable --latency output above it stays unchanged.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RMBENCH requests=%d bytes=%d duration_us=%d p50_us=%d p99_us=%d " ..
    "connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.bytes, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
