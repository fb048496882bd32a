-- start.lua: KEYS[1] job hash; KEYS[2] (optional) the worker's in-flight index of the
-- queue, in the same slot. ARGV: type, queue, now (RFC 3339), ttl seconds, worker id
-- ("" for none), task id (with KEYS[2]). Returns start's reply (never 0: the type is
-- given).
return start(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
