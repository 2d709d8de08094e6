-- Put before every script by scripts.py.
-- While a Redis Cluster migrates a slot, a script that reads or writes a key it did not
-- declare in KEYS can be wrong without an error: on the node taking the slot over (where
-- ASK sends the call once a declared key has moved), a key that has not moved yet reads
-- as missing and a write creates it there, beside the one still to move. Multi-key
-- commands are the exception: Redis refuses one while any of its keys is on the other
-- node (TRYAGAIN or ASK, raised in a script as "non local key"), on both nodes.
-- `settled(anchor, keys)` makes that check for the keys a script found missing or is
-- about to write: EXISTS of `anchor` (another key of the same slot, so that each call has
-- at least two keys) with the keys, a bounded number at a time. On a slot that is not
-- moving, and on a single Redis, it costs only the lookups.
local function settled(anchor, keys)
  local n = #keys
  for i = 1, n, 256 do
    redis.call('EXISTS', anchor, unpack(keys, i, math.min(i + 255, n)))
  end
end

-- GET of one key beyond KEYS, whose miss is checked as above before it is believed.
local function settled_get(anchor, key)
  local value = redis.call('GET', key)
  if not value then settled(anchor, {key}) end
  return value
end

