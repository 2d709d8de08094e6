-- One view read: the live generation, its checkpoint, the view and its version, in one
-- atomic step (a read racing a generation switch sees the old or the new, never a mix).
-- KEYS[1] the partition's live generation pointer. ARGV: partition tag .. ':', item id.
-- Returns {0} while the partition has no live generation, else
-- {1, checkpoint, view or nil, version (negative: deleted), generation}.
local g = redis.call('GET', KEYS[1])
if not g then return {0} end
local b = ARGV[1] .. g .. ':'
return {1, redis.call('GET', b .. 'cp') or '0', redis.call('GET', b .. 'v:' .. ARGV[2]),
        redis.call('HGET', b .. 'ver', ARGV[2]) or '0', g}
