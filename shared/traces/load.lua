-- wrk script: a fixed per-connection pause (plain wrk has no -R) and a bounded request count.
local limit = tonumber(os.getenv("REPRO_WRK_REQUESTS_PER_THREAD") or "0")
local pause = tonumber(os.getenv("REPRO_WRK_DELAY_MS") or "0")
local done = 0

function delay()
  return pause
end

function response(status, headers, body)
  done = done + 1
  if limit > 0 and done >= limit then
    wrk.thread:stop()
  end
end
