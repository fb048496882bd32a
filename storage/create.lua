-- KEYS[1] job hash, KEYS[2] recent-jobs index, KEYS[3] dashboard job index.
-- ARGV: type, queue, state, created_at (RFC 3339), ttl seconds, score (ms), id, index size,
-- payload, then optional field/value pairs (schedule, tick, note).
-- Returns 1 when the record was created, 0 when one with this id exists (unchanged).
-- The dashboard index keeps every job younger than the retention: entries whose score
-- is older than the ttl are trimmed here, on write, so it needs no sweeper.
if redis.call("EXISTS", KEYS[1]) == 1 then
  return 0
end
redis.call("HSET", KEYS[1], "type", ARGV[1], "queue", ARGV[2], "state", ARGV[3],
  "attempts", 0, "done", 0, "total", 0, "created_at", ARGV[4], "payload", ARGV[9],
  "events", "created " .. ARGV[4] .. "\n")
for i = 10, #ARGV, 2 do
  redis.call("HSET", KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call("EXPIRE", KEYS[1], ARGV[5])
redis.call("ZADD", KEYS[2], ARGV[6], ARGV[7])
redis.call("ZREMRANGEBYRANK", KEYS[2], 0, -tonumber(ARGV[8]) - 1)
redis.call("ZADD", KEYS[3], ARGV[6], ARGV[7])
redis.call("ZREMRANGEBYSCORE", KEYS[3], "-inf", "(" .. (tonumber(ARGV[6]) - tonumber(ARGV[5]) * 1000))
redis.call("EXPIRE", KEYS[3], ARGV[5])
return 1
