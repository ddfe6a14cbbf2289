-- wrk script: a fixed request rate per wrk thread (plain wrk has no -R) and a bounded request count.
-- Each thread hands out send slots every `interval` ms; a connection that finished its last request
-- waits for the next free slot. A slot already past is not caught up (no bursts): the rate then drops,
-- and the collector records the rate it reached. With REPRO_WRK_BURST=1 a thread's connections send in
-- step instead, all at once every `interval` x connections-per-thread ms: the same mean rate, arriving
-- together (the connection behaviour: more simultaneous requests than Apache has workers).
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } repro_timespec;
int clock_gettime(int clk_id, repro_timespec *tp);
]]
local ts = ffi.new("repro_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local limit = tonumber(os.getenv("REPRO_WRK_REQUESTS_PER_THREAD") or "0")
local interval = tonumber(os.getenv("REPRO_WRK_INTERVAL_MS") or "0")
local burst = os.getenv("REPRO_WRK_BURST") == "1"
local per_thread = tonumber(os.getenv("REPRO_WRK_CONNECTIONS_PER_THREAD") or "1")
local done = 0
local next_slot = nil
local t0 = nil

function delay()
  if interval <= 0 then
    return 0
  end
  local now = now_ms()
  if burst then
    local period = interval * per_thread
    t0 = t0 or now
    return math.floor(period - (now - t0) % period + 0.5)
  end
  if next_slot == nil or next_slot < now then
    next_slot = now
  end
  local wait = next_slot - now
  next_slot = next_slot + interval
  return math.floor(wait + 0.5)
end

function response(status, headers, body)
  done = done + 1
  if limit > 0 and done >= limit then
    wrk.thread:stop()
  end
end
