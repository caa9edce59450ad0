-- wrk script for bench/run.sh: prints one machine-readable line with exact totals when the
-- run ends. The human-readable --latency output above it stays unchanged.
--
-- With RM_RATE=N in the environment, requests are paced to N per second in total (wrk -t1):
-- request k is not sent before start + k/N. wrk takes the delay in whole milliseconds, so
-- requests leave in bursts of about N/1000 each millisecond; every target sees the same
-- pattern. A target that cannot keep up falls behind the schedule (no delay) and the report
-- shows its achieved rate below N.
local rate = tonumber(os.getenv("RM_RATE") or "")
if rate and rate > 0 then
  local ffi = require("ffi")
  ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } rm_timespec;
    int clock_gettime(int clk_id, rm_timespec *tp);
  ]]
  local ts = ffi.new("rm_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local interval = 1000 / rate
  local next_at = nil
  function delay()
    local now = now_ms()
    if next_at == nil or next_at < now - 1000 then
      next_at = now  -- start, or more than a second behind: do not send a catch-up flood
    end
    next_at = next_at + interval
    local d = next_at - now
    return d > 0 and math.floor(d) or 0
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RMBENCH requests=%d bytes=%d duration_us=%d p50_us=%d p99_us=%d " ..
    "connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.bytes, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
