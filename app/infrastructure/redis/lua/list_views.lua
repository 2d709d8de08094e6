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
local out = {1, redis.call('GET', b .. 'cp') or '0', redis.call('ZCARD', ix), g}
for _, m in ipairs(members) do
  out[#out + 1] = m
  -- An entry ends with the item id (36 characters): app/queries/views.py.
  out[#out + 1] = redis.call('GET', b .. 'v:' .. string.sub(m, -36))
end
return out
