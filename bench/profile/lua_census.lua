-- Runs a bench server (arg[1]: its file; the rest: its arguments) and,
-- whenever the file $CENSUS_TRIGGER appears, writes a census of the Lua
-- objects reachable from the registry to $CENSUS_TRIGGER.out (then
-- removes the trigger). Used by lua_census.sh: the census taken before
-- and while N connections are held, the difference divided by N is what
-- one idle connection keeps, object by object.
--
-- Each object is counted once, under a label saying how it was first
-- reached: an instance of a turbo_ws class is labelled by its class name
-- (`Echo`), anything else by its parent's label and the key
-- (`Echo.request._raw`, numbers as `[]`); a Lua function by where it is
-- defined. Sizes are LuaJIT's (x64, GC64) object sizes, read from the
-- objects themselves through the FFI for tables (array and hash parts).
local core = require("turbo_ws").core
local ffi = require "ffi"

ffi.cdef [[
typedef struct census_GCtab {
  void *nextgc; uint8_t marked, gct, nomm; int8_t colo;
  void *array, *gclist, *metatable, *node;
  uint32_t asize, hmask; void *freetop;
} census_GCtab;
]]

local trigger = assert(os.getenv("CENSUS_TRIGGER"), "CENSUS_TRIGGER not set")

-- The object's address (not tostring: that would run __tostring).
local function address(obj)
  return tonumber(string.format("%p", obj))
end

-- Bytes of a table as LuaJIT allocates it: the header, the array part
-- (inside the header's allocation when colocated) and the hash part.
local function table_size(t)
  local tab = ffi.cast("census_GCtab *", ffi.cast("uintptr_t", address(t)))
  local size = 64 + 8 * tab.asize
  if tab.hmask > 0 then size = size + 24 * (tab.hmask + 1) end
  return size
end

-- The class name of an instance of a turbo_ws class (its `class` field,
-- or its class's, as for WebSocketHandlers), else nil.
local function class_name(t)
  local dict = getmetatable(t)
  local cls = rawget(t, "class")
  if cls == nil and type(dict) == "table" then cls = rawget(dict, "class") end
  if type(cls) == "table" and type(rawget(cls, "name")) == "string"
    and rawget(cls, "__instanceDict") == dict then
    return rawget(cls, "name")
  end
end

local function key_label(k)
  if type(k) == "string" then
    if string.find(k, "^[%a_][%w_]*$") then return "." .. k end
    return "[string]"
  end
  if type(k) == "number" then return "[]" end
  return "[" .. type(k) .. "]"
end

local function census()
  collectgarbage("collect")
  local heap = collectgarbage("count") * 1024
  local seen, counts, bytes = {}, {}, {}
  local queue, head = {}, 1
  local function add(obj, label)
    local t = type(obj)
    if obj == nil or t == "boolean" or t == "number" or t == "cdata" then return end
    if t == "lightuserdata" or t == "thread" and obj == coroutine.running() or seen[obj] then return end
    seen[obj] = true
    local size
    if t == "table" then
      label = class_name(obj) or label
      size = table_size(obj)
    elseif t == "function" then
      local info = debug.getinfo(obj, "Su")
      if info.what == "C" then
        label = "C function"
        size = 48
      else
        label = "fn " .. info.short_src .. ":" .. info.linedefined
        -- GCfuncL: 40 B and a slot per upvalue (the upvalue objects,
        -- 48 B each and maybe shared, are counted on their own below).
        size = 40 + 8 * info.nups
      end
    elseif t == "string" then
      size = 24 + #obj + 1
    elseif t == "userdata" then
      label = label .. "<userdata>"
      size = 48
    else
      size = 0
    end
    counts[label] = (counts[label] or 0) + 1
    bytes[label] = (bytes[label] or 0) + size
    queue[#queue + 1] = { obj, label }
  end
  add(debug.getregistry(), "registry")
  add(_G, "_G")
  while head <= #queue do
    local obj, label = queue[head][1], queue[head][2]
    queue[head] = false
    head = head + 1
    local t = type(obj)
    if t == "table" then
      add(getmetatable(obj), label .. "<mt>")
      for k, v in next, obj do
        add(k, label .. "<key>")
        add(v, label .. key_label(k))
      end
    elseif t == "function" then
      local i = 1
      while true do
        local name, value = debug.getupvalue(obj, i)
        if name == nil then break end
        local id = debug.upvalueid(obj, i)
        if not seen[id] then
          seen[id] = true
          local what = label .. "^" .. name .. " <upvalue>"
          counts[what] = (counts[what] or 0) + 1
          bytes[what] = (bytes[what] or 0) + 48
        end
        add(value, label .. "^" .. name)
        i = i + 1
      end
      add(debug.getfenv(obj), label .. "<env>")
    elseif t == "userdata" then
      add(getmetatable(obj), label .. "<mt>")
      add(debug.getfenv(obj), label .. "<env>")
    end
  end
  local f = assert(io.open(trigger .. ".out", "w"))
  for label, n in pairs(counts) do
    f:write(string.format("%d\t%d\t%s\n", n, bytes[label], label))
  end
  f:write(string.format("%d\t%d\t%s\n", 1, heap, "<collectgarbage count>"))
  f:close()
end

core.set_interval(300, function()
  local f = io.open(trigger, "r")
  if not f then return end
  f:close()
  census()
  os.remove(trigger)
end, nil, false)

local file = table.remove(arg, 1)
dofile(file)
