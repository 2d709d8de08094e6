-- The partition has no live generation (a fresh Redis, or one that lost its data): name
-- the generation to restore (or follow one named already) and announce that the
-- partition's views are gone. One step, so projectors racing here agree.
-- KEYS: gen, building. ARGV: new generation name, channel, the partition's notice label.
-- Returns {1, live generation} if there is one after all, else {0, generation to fill}.
local live = redis.call('GET', KEYS[1])
if live then return {1, live} end
local building = redis.call('GET', KEYS[2])
if not building then
  building = ARGV[1]
  redis.call('SET', KEYS[2], building)
end
redis.call('PUBLISH', ARGV[2], ARGV[3] .. ':0::*')
return {0, building}
