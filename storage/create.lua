-- KEYS[1] job hash.
-- ARGV: type, queue, state, created_at (RFC 3339), ttl seconds, payload, then optional
-- field/value pairs (schedule, tick, note, payload_truncated).
-- Returns 1 when the record was created, 0 when one with this id exists (unchanged).
if redis.call("EXISTS", KEYS[1]) == 1 then
  return 0
end
redis.call("HSET", KEYS[1], "type", ARGV[1], "queue", ARGV[2], "state", ARGV[3],
  "attempts", 0, "done", 0, "total", 0, "created_at", ARGV[4], "payload", ARGV[6],
  "events", "created " .. ARGV[4] .. "\n")
for i = 7, #ARGV, 2 do
  redis.call("HSET", KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call("EXPIRE", KEYS[1], ARGV[5])
return 1
