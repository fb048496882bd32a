-- KEYS[1] job hash, KEYS[2] recent-jobs index.
-- ARGV: type, queue, state, created_at (RFC 3339), ttl seconds, score (ms), id, index size,
-- then optional field/value pairs (schedule, tick, note).
-- Returns 1 when the record was created, 0 when one with this id exists (unchanged).
if redis.call("EXISTS", KEYS[1]) == 1 then
  return 0
end
redis.call("HSET", KEYS[1], "type", ARGV[1], "queue", ARGV[2], "state", ARGV[3],
  "attempts", 0, "done", 0, "total", 0, "created_at", ARGV[4])
for i = 9, #ARGV, 2 do
  redis.call("HSET", KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call("EXPIRE", KEYS[1], ARGV[5])
redis.call("ZADD", KEYS[2], ARGV[6], ARGV[7])
redis.call("ZREMRANGEBYRANK", KEYS[2], 0, -tonumber(ARGV[8]) - 1)
return 1
