-- KEYS[1]: job hash; KEYS[2] (optional): the job's checkpoint, removed with a final
-- outcome. ARGV[1]: the attempt this outcome belongs to ("0": any); ARGV[2]: ttl
-- seconds; ARGV[3..]: field, value pairs.
-- Returns 1 when written, 0 when a newer attempt owns the record (nothing changes).
if ARGV[1] ~= "0" and redis.call("HGET", KEYS[1], "attempts") ~= ARGV[1] then
  return 0
end
redis.call("HSET", KEYS[1], unpack(ARGV, 3))
redis.call("EXPIRE", KEYS[1], ARGV[2])
if KEYS[2] then
  redis.call("DEL", KEYS[2])
end
return 1
