-- start(key, index, typ, queue, now, ttl, worker, id): the start of a job's attempt,
-- shared by start.lua's call (below) and fetch.lua (prepended to both by jobs.go).
-- key: the job hash; index: the worker's in-flight index of the queue, in the same
-- slot, or nil; typ, queue: the job's identity, written when its record lacks it (typ
-- nil: the caller cannot tell, and a record without its identity is left alone);
-- now: RFC 3339; ttl: seconds; worker: the owner of this attempt, which recovery
-- checks ("" or nil for none); id: the task id (with index).
-- Returns the new attempt count (the task is then indexed), -1 when the job already
-- completed, or 0 when typ is nil and the record lacks its identity (nothing changes
-- then). One read and one write of the record: every call out of Lua costs more than
-- the work it does.
local function start(key, index, typ, queue, now, ttl, worker, id)
  local f = redis.call("HMGET", key, "state", "type", "queue", "created_at", "attempts", "events")
  if f[1] == "completed" then
    return -1
  end
  if not typ and not (f[2] and f[3] and f[4]) then
    return 0
  end
  local n = (tonumber(f[5]) or 0) + 1
  local set = {"state", "active", "error", "", "attempts", n}
  -- A record written before its job was created (or lost) gets its identity here.
  if not f[2] then set[#set + 1] = "type"; set[#set + 1] = typ end
  if not f[3] then set[#set + 1] = "queue"; set[#set + 1] = queue end
  if not f[4] then set[#set + 1] = "created_at"; set[#set + 1] = now end
  if worker and worker ~= "" then
    set[#set + 1] = "worker"; set[#set + 1] = worker
  end
  -- The timeline: one line per event, bounded so a crash-looping task cannot grow it.
  local events = f[6] or ""
  if #events < 8192 then
    set[#set + 1] = "events"; set[#set + 1] = events .. "started " .. now .. " attempt " .. n .. "\n"
  end
  redis.call("HSET", key, unpack(set))
  redis.call("EXPIRE", key, ttl)
  if index then
    redis.call("HSET", index, id, queue)
  end
  return n
end
