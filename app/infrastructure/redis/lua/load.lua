-- What a projector folds onto: the `ver` entries and views of some items of one
-- generation, in one call (a Redis Cluster pipeline may not hold an MGET), read only
-- while the pointer still names that generation. Without that check a rebuild that
-- switched and dropped the generation a moment ago would hand back nothing, and the
-- projector would fold an update onto an item it then believes missing.
-- KEYS[1] the generation's `ver` hash, KEYS[2] the pointer that must name it (as in
-- apply.lua). ARGV: base, generation, then the item ids.
-- Returns {-1, 'generation'} when the pointer moved, else {1, version or false, ...}
-- followed by {view or false, ...}, in the ids' order.
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return {-1, 'generation'} end
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
local out = {1}
for _, v in ipairs(redis.call('HMGET', KEYS[1], unpack(ids))) do out[#out + 1] = v end
for _, id in ipairs(ids) do
  out[#out + 1] = redis.call('GET', ARGV[1] .. 'v:' .. id)
end
return out
