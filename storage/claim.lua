-- Claim a worker whose pulse has lapsed, so that exactly one of any number of reapers
-- recovers its tasks.
-- KEYS: the worker's pulse key, its claim key, its heartbeat record.
-- ARGV: claim lifetime (ms), claimant.
-- Returns 1 when claimed; 0 when the worker pulses (alive), is a worker of a version
-- that does not pulse whose heartbeat record still lives (a rolling deploy: its record
-- lapses 10 s after its death, and it is claimed then), or another reaper holds the
-- claim. A claim whose reaper died expires, and another reaper takes it over.
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
local rec = redis.call("GET", KEYS[3])
if rec and not string.find(rec, '"pulse":true', 1, true) then return 0 end
if redis.call("SET", KEYS[2], ARGV[2], "NX", "PX", ARGV[1]) then return 1 end
return 0
