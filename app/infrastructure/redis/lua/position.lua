-- The live generation and its checkpoint: where a view cache starts from.
-- KEYS[1] the partition's live generation pointer. ARGV: partition tag .. ':'.
-- Returns {0} while the partition has no live generation, else {1, checkpoint, generation}.
local g = redis.call('GET', KEYS[1])
if not g then return {0} end
return {1, settled_get(KEYS[1], ARGV[1] .. g .. ':cp') or '0', g}  -- lib/settled.lua
