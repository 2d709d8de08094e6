-- The live generation and its checkpoint: where a view cache starts from.
-- KEYS[1] the partition's live generation pointer. ARGV: partition tag .. ':'.
-- Returns {0} while the partition has no live generation, else {1, checkpoint, generation}.
local g = redis.call('GET', KEYS[1])
if not g then return {0} end
local cp = ARGV[1] .. g .. ':cp'
local checkpoint = redis.call('GET', cp)
if not checkpoint then settled(KEYS[1], {cp}) end  -- lib/settled.lua
return {1, checkpoint or '0', g}
