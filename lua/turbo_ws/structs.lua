--- turbo_ws.structs -- Turbo's `turbo.structs`: the double-ended queue
-- (`structs.deque`, also `require "turbo.structs.deque"` after
-- turbo_ws.compat). Turbo's FFI byte buffer (`structs.buffer`) is not
-- provided.
local class = require "turbo_ws.class"

local tostring, type = tostring, type
local concat = table.concat

local structs = {}

--- deque(): items added and removed at both ends in constant time. The
-- items live in `_items` at indices `_first` .. `_last` (nil items too).
local deque = class("Deque")
structs.deque = deque

function deque:initialize()
  self._items = {}
  self._first = 1
  self._last = 0
end

--- Adds `item` at the tail.
function deque:append(item)
  local last = self._last + 1
  self._last = last
  self._items[last] = item
end

--- Adds `item` at the head.
function deque:appendleft(item)
  local first = self._first - 1
  self._first = first
  self._items[first] = item
end

--- Removes the item at the tail and returns it; nil when empty.
function deque:pop()
  local last = self._last
  if last < self._first then return nil end
  local item = self._items[last]
  self._items[last] = nil
  self._last = last - 1
  return item
end

--- Removes the item at the head and returns it; nil when empty.
function deque:popleft()
  local first = self._first
  if self._last < first then return nil end
  local item = self._items[first]
  self._items[first] = nil
  self._first = first + 1
  return item
end

--- The item at the tail / head, left in place; nil when empty.
function deque:peeklast()
  if self._last < self._first then return nil end
  return self._items[self._last]
end

function deque:peekfirst()
  if self._last < self._first then return nil end
  return self._items[self._first]
end

--- The number of items.
function deque:size() return self._last - self._first + 1 end

--- Whether there is at least one item.
function deque:not_empty() return self._last >= self._first end

--- The item at position `pos`, counted from 0 at the head (as Turbo);
-- nil outside the deque.
function deque:getn(pos)
  if type(pos) ~= "number" or pos < 0 or pos >= self:size() then return nil end
  return self._items[self._first + pos]
end

--- The lengths of all items added up (each must have a :len() method, as
-- strings do).
function deque:strlen()
  local n = 0
  for i = self._first, self._last do n = n + self._items[i]:len() end
  return n
end

--- The items as one string, head first (strings, or values tostring()
-- turns into their bytes).
function deque:concat()
  local parts = {}
  for i = self._first, self._last do
    local item = self._items[i]
    parts[#parts + 1] = type(item) == "string" and item or tostring(item)
  end
  return concat(parts)
end

function deque:__tostring() return self:concat() end

--- `"a" .. d` and `d .. "b"`: the items' concat() joined with the string.
function deque.__concat(left, right)
  if class.instanceOf(deque, left) then left = left:concat() end
  if class.instanceOf(deque, right) then right = right:concat() end
  return left .. right
end

return structs
