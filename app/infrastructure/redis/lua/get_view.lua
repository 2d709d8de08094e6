-- One view read: the live generation, its checkpoint, the view and its version, in one
-- atomic step (a read racing a generation switch sees the old or the new, never a mix).
-- KEYS[1] the partition's live generation pointer. ARGV: partition tag .. ':', item id.
-- Returns {0} while the partition has no live generation, else
-- {1, checkpoint, view or nil, version (negative: deleted), generation}.
local g = redis.call('GET', KEYS[1])
if not g then return {0} end
local b = ARGV[1] .. g .. ':'
local cp, vkey, verkey = b .. 'cp', b .. 'v:' .. ARGV[2], b .. 'ver'
local checkpoint, view, ver = redis.call('GET', cp), redis.call('GET', vkey),
                              redis.call('HGET', verkey, ARGV[2])
-- A miss is an answer only where the slot is not moving (lib/settled.lua).
if not (checkpoint and view and ver) then settled(KEYS[1], {cp, vkey, verkey}) end
return {1, checkpoint or '0', view, ver or '0', g}
