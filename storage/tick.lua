-- KEYS[1] schedule hash. ARGV: tick (unix seconds), job id ("" when skipped), skip reason.
-- The last tick only moves forward. Returns 1 when it moved.
local tick = tonumber(ARGV[1])
local last = tonumber(redis.call("HGET", KEYS[1], "last_tick") or "0")
if tick <= last then
  return 0
end
redis.call("HSET", KEYS[1], "last_tick", ARGV[1], "last_job_id", ARGV[2])
if ARGV[2] == "" then
  redis.call("HSET", KEYS[1], "skipped_tick", ARGV[1], "skip_reason", ARGV[3])
end
return 1
