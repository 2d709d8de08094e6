-- One partition's part of a list page: entries of one index after a cursor, with their
-- views, the index size and the checkpoint, from the live generation in one step.
-- KEYS[1] the partition's live generation pointer. ARGV: partition tag .. ':', index
-- name, 'asc' or 'desc', start (ZRANGE BYLEX bound), count.
-- Returns {0} while the partition has no live generation, else
-- {1, checkpoint, index size, generation, entry, view, entry, view, ...}.
local g = redis.call('GET', KEYS[1])
if not g then return {0} end
local b = ARGV[1] .. g .. ':'
local ix = b .. ARGV[2]
local members
if ARGV[3] == 'desc' then
  members = redis.call('ZRANGE', ix, ARGV[4], '-', 'BYLEX', 'REV', 'LIMIT', 0, ARGV[5])
else
  members = redis.call('ZRANGE', ix, ARGV[4], '+', 'BYLEX', 'LIMIT', 0, ARGV[5])
end
local checkpoint, size = redis.call('GET', b .. 'cp'), redis.call('ZCARD', ix)
local out = {1, checkpoint or '0', size, g}
-- What is missing here is checked before it is answered (lib/settled.lua): an empty
-- index (Redis keeps no empty sorted set), no checkpoint, a member without its view.
local missing = {}
if not checkpoint then missing[#missing + 1] = b .. 'cp' end
if size == 0 then missing[#missing + 1] = ix end
for _, m in ipairs(members) do
  out[#out + 1] = m
  -- An entry ends with the item id (36 characters): app/queries/views.py.
  local vkey = b .. 'v:' .. string.sub(m, -36)
  local view = redis.call('GET', vkey)
  if not view then missing[#missing + 1] = vkey end
  out[#out + 1] = view
end
settled(KEYS[1], missing)
return out
