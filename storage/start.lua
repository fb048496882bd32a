-- KEYS[1] job hash; KEYS[2] (optional) the worker's in-flight index of the queue, in
-- the same slot. ARGV: type, queue, now (RFC 3339), ttl seconds, worker id (the owner
-- of this attempt, which recovery checks; "" for none), task id (with KEYS[2]).
-- Returns the new attempt count (the task is then indexed), or -1 when the job already
-- completed (nothing changes). One read and one write of the record: every call out of
-- Lua costs more than the work it does.
local key = KEYS[1]
local f = redis.call("HMGET", key, "state", "type", "queue", "created_at", "attempts", "events")
if f[1] == "completed" then
  return -1
end
local n = (tonumber(f[5]) or 0) + 1
local set = {"state", "active", "error", "", "attempts", n}
-- A record written before its job was created (or lost) gets its identity here.
if not f[2] then set[#set + 1] = "type"; set[#set + 1] = ARGV[1] end
if not f[3] then set[#set + 1] = "queue"; set[#set + 1] = ARGV[2] end
if not f[4] then set[#set + 1] = "created_at"; set[#set + 1] = ARGV[3] end
if ARGV[5] and ARGV[5] ~= "" then
  set[#set + 1] = "worker"; set[#set + 1] = ARGV[5]
end
-- The timeline: one line per event, bounded so a crash-looping task cannot grow it.
local events = f[6] or ""
if #events < 8192 then
  set[#set + 1] = "events"; set[#set + 1] = events .. "started " .. ARGV[3] .. " attempt " .. n .. "\n"
end
redis.call("HSET", key, unpack(set))
redis.call("EXPIRE", key, ARGV[4])
if KEYS[2] then
  redis.call("HSET", KEYS[2], ARGV[6], ARGV[2])
end
return n
