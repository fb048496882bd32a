-- Every key is in the job's queue's slot. KEYS[1]: job hash; KEYS[2]: its checkpoint;
-- KEYS[3]: a worker's in-flight index of the queue.
-- ARGV[1]: the attempt this outcome belongs to ("0": any); ARGV[2]: ttl seconds;
-- ARGV[3]: the timeline line ("" for none); ARGV[4]: what else to do, any of "f" (a
-- final outcome: drop the checkpoint) and "i" (the worker is done with the task:
-- unindex ARGV[5], whatever the attempt); ARGV[5]: task id; ARGV[6..]: field, value
-- pairs.
-- Returns 1 when written, 0 when a newer attempt owns the record (the record and the
-- checkpoint are unchanged).
if string.find(ARGV[4], "i", 1, true) then
  redis.call("HDEL", KEYS[3], ARGV[5])
end
local f = redis.call("HMGET", KEYS[1], "attempts", "events")
if ARGV[1] ~= "0" and f[1] ~= ARGV[1] then
  return 0
end
local set = {unpack(ARGV, 6)}
if ARGV[3] ~= "" then
  local events = f[2] or ""
  if #events < 8192 then
    set[#set + 1] = "events"; set[#set + 1] = events .. ARGV[3] .. "\n"
  end
end
redis.call("HSET", KEYS[1], unpack(set))
redis.call("EXPIRE", KEYS[1], ARGV[2])
if string.find(ARGV[4], "f", 1, true) then
  redis.call("DEL", KEYS[2])
end
return 1
