-- What a projector folds onto: the `ver` entries and views of some items of one
-- generation, in one call (a Redis Cluster pipeline may not hold an MGET).
-- KEYS[1] the generation's `ver` hash. ARGV: base, then the item ids.
-- Returns {version or false, ...} followed by {view or false, ...}, in the ids' order.
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
local out = redis.call('HMGET', KEYS[1], unpack(ids))
for _, id in ipairs(ids) do
  out[#out + 1] = redis.call('GET', ARGV[1] .. 'v:' .. id)
end
return out
