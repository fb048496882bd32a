-- Claim a worker whose pulse has lapsed, so that exactly one of any number of reapers
-- recovers its tasks.
-- KEYS: the worker's pulse key, its claim key. ARGV: claim lifetime (ms), claimant.
-- Returns 1 when claimed; 0 when the worker pulses (alive) or another reaper holds the
-- claim. A claim whose reaper died expires, and another reaper takes it over.
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
if redis.call("SET", KEYS[2], ARGV[2], "NX", "PX", ARGV[1]) then return 1 end
return 0
