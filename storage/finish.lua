-- KEYS[1]: job hash; KEYS[2] (optional, with a final outcome): the job's checkpoint,
-- removed; KEYS[3] (optional, with a completion): the queue's completions counter of
-- this minute. ARGV[1]: the attempt this outcome belongs to ("0": any); ARGV[2]: ttl
-- seconds; ARGV[3]: the timeline line ("" for none); ARGV[4..]: field, value pairs.
-- Returns 1 when written, 0 when a newer attempt owns the record (nothing changes).
if ARGV[1] ~= "0" and redis.call("HGET", KEYS[1], "attempts") ~= ARGV[1] then
  return 0
end
redis.call("HSET", KEYS[1], unpack(ARGV, 4))
if ARGV[3] ~= "" and redis.call("HSTRLEN", KEYS[1], "events") < 8192 then
  redis.call("HSET", KEYS[1], "events", (redis.call("HGET", KEYS[1], "events") or "") .. ARGV[3] .. "\n")
end
redis.call("EXPIRE", KEYS[1], ARGV[2])
if #KEYS >= 2 then
  redis.call("DEL", KEYS[2])
end
if #KEYS >= 3 then
  redis.call("INCR", KEYS[3])
  redis.call("EXPIRE", KEYS[3], 7200)
end
return 1
