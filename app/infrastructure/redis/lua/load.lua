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
local missing = {}
for _, id in ipairs(ids) do
  local vkey = ARGV[1] .. 'v:' .. id
  local view = redis.call('GET', vkey)
  if not view then missing[#missing + 1] = vkey end
  out[#out + 1] = view
end
-- A view this finds missing is gone only where the slot is not moving (lib/settled.lua;
-- KEYS, the `ver` hash among them, Redis checks itself).
settled(KEYS[2], missing)
return out
