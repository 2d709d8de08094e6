-- A projector that acquired a partition (its lease, in PostgreSQL) raises the partition's
-- fence to its epoch before it writes: from this step on, an owner that lost the
-- partition and does not know it yet (a stopped process, a stalled one) is refused by
-- apply.lua, even where the checkpoint it expects is still right.
-- KEYS[1] the partition's fence, KEYS[2] its live generation pointer: declared, though
-- this reads it not, so that Redis refuses the call while a Redis Cluster moves the slot
-- and either is on the other node (a single key missing on the node taking the slot over
-- would read as no fence, and be written there: lib/settled.lua). ARGV[1] the new
-- owner's epoch.
-- Returns {1, epoch} when the fence is at that epoch now, {0, fence} when a later owner
-- raised it already (this acquisition is stale: the caller drops the partition).
local fence = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = tonumber(ARGV[1])
if fence > epoch then return {0, fence} end
redis.call('SET', KEYS[1], epoch)
return {1, epoch}
