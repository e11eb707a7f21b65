--- turbo_ws.class -- the class system Turbo.lua programs expect.
--
-- Turbo bundles middleclass 2.0, which defines the globals `class`,
-- `Object`, `instanceOf`, `subclassOf` and `includes`. This module gives the
-- same semantics without touching any global: it returns a callable table,
-- so `local class = require "turbo_ws.class"` followed by
-- `class("Foo")` / `class("Bar", Foo)` works, and the middleclass 2.0
-- helpers hang off it (`class.Object`, `class.instanceOf`, ...).
-- `class.install(env)` copies those five names into `env` (e.g. _G) for the
-- caller that wants Turbo's globals.
--
-- The middleclass 3.x spellings (`obj:isInstanceOf(C)`, `C:isSubclassOf(P)`,
-- `C:includes(mixin)`) are provided as well; they cost nothing and programs
-- written against newer middleclass use them.
--
-- Layout of a class (same field names as middleclass 2.0, because programs
-- and Turbo itself read some of them, e.g. `self.class.name`):
--   name, super, static, subclasses, __instanceDict, __mixins
-- `__instanceDict` is the metatable of every instance. Ordinary methods are
-- found through a metatable chain to the superclass dictionary, so methods
-- added to a parent after subclassing are still inherited. Metamethods
-- cannot be found through __index (Lua only looks at the metatable itself),
-- so they are copied down into every subclass dictionary and re-propagated
-- whenever a class (re)defines one.

local setmetatable, rawget, type, pairs, ipairs, assert, tostring =
      setmetatable, rawget, type, pairs, ipairs, assert, tostring

-- Every class ever created; weak so that unused classes can be collected.
local registry = setmetatable({}, { __mode = "k" })

-- Metamethods an instance can get from its class. middleclass 2.0 knew the
-- first twelve; the rest are the Lua 5.2-5.4 additions, harmless on LuaJIT.
local METAMETHODS = {}
for _, name in ipairs({
    "__add", "__call", "__concat", "__div", "__le", "__lt", "__mod", "__mul",
    "__pow", "__sub", "__tostring", "__unm",
    "__eq", "__len", "__idiv", "__band", "__bor", "__bxor", "__shl", "__shr",
    "__bnot", "__close", "__gc", "__mode", "__pairs", "__ipairs", "__name",
}) do
    METAMETHODS[name] = true
end

local function is_class(value)
    return type(value) == "table" and registry[value] == true
end

-- Copy metamethod `name` (as resolved for `klass`) into every subclass that
-- does not declare its own, recursively.
local function propagate(klass, name)
    local value = klass.__instanceDict[name]
    for sub in pairs(klass.subclasses) do
        if rawget(sub.__declared, name) == nil then
            sub.__instanceDict[name] = value
            propagate(sub, name)
        end
    end
end

-- Define (or, with nil, undefine) an instance member of `klass`. This is
-- what `Foo.bar = fn` and `function Foo:bar() end` end up calling.
local function declare(klass, name, value)
    local dict = klass.__instanceDict
    if METAMETHODS[name] then
        klass.__declared[name] = value
        if value == nil and klass.super then
            -- Fall back to what the parent provides.
            value = klass.super.__instanceDict[name]
        end
        dict[name] = value
        propagate(klass, name)
    else
        dict[name] = value
    end
end

local function class_tostring(klass)
    return "class " .. tostring(rawget(klass, "name"))
end

local function class_call(klass, ...)
    return klass:new(...)
end

-- Build the raw class table and wire up its metatables.
local function create_class(name, super)
    local dict = {}
    dict.__index = dict
    local klass = {
        name = name,
        super = super,
        static = {},
        subclasses = setmetatable({}, { __mode = "k" }),
        __instanceDict = dict,
        __mixins = {},
        __declared = {},  -- metamethods this very class defines
    }

    if super then
        local super_dict, super_static = super.__instanceDict, super.static
        setmetatable(dict, { __index = super_dict })
        -- Reading Foo.x looks at Foo's instance methods first, then at the
        -- static members inherited from the parent (middleclass 2.0 order).
        setmetatable(klass.static, { __index = function(_, key)
            local value = dict[key]
            if value == nil then value = super_static[key] end
            return value
        end })
        for mm in pairs(METAMETHODS) do
            local inherited = super_dict[mm]
            if inherited ~= nil then dict[mm] = inherited end
        end
    else
        setmetatable(klass.static, { __index = function(_, key)
            return dict[key]
        end })
    end

    setmetatable(klass, {
        __index = klass.static,
        __newindex = declare,
        __tostring = class_tostring,
        __call = class_call,
    })
    registry[klass] = true
    return klass
end

-- Copy a mixin's members into `klass`, as middleclass 2.0 does: every field
-- except `included` and `static`; `static` members go to the class itself;
-- then the mixin's `included(mixin, klass)` hook runs.
local function include_mixin(klass, mixin)
    assert(type(mixin) == "table", "mixin must be a table")
    for name, value in pairs(mixin) do
        if name ~= "included" and name ~= "static" then
            declare(klass, name, value)
        end
    end
    if type(mixin.static) == "table" then
        for name, value in pairs(mixin.static) do
            klass.static[name] = value
        end
    end
    if type(mixin.included) == "function" then
        mixin:included(klass)
    end
    klass.__mixins[mixin] = true
end

--------------------------------------------------------------------------
-- Object: the root class.

local Object = create_class("Object", nil)

function Object.static:allocate()
    assert(is_class(self),
        "Make sure that you are using 'Class:allocate' instead of 'Class.allocate'")
    return setmetatable({ class = self }, self.__instanceDict)
end

function Object.static:new(...)
    local instance = self:allocate()
    instance:initialize(...)
    return instance
end

function Object.static:subclass(name)
    assert(is_class(self),
        "Make sure that you are using 'Class:subclass' instead of 'Class.subclass'")
    assert(type(name) == "string", "You must provide a name(string) for your class")
    local sub = create_class(name, self)
    self.subclasses[sub] = true
    self:subclassed(sub)
    return sub
end

-- Hook called on the parent each time it is subclassed.
function Object.static:subclassed(other) end -- luacheck: ignore

function Object.static:include(...)
    assert(is_class(self),
        "Make sure you that you are using 'Class:include' instead of 'Class.include'")
    for _, mixin in ipairs({ ... }) do
        include_mixin(self, mixin)
    end
    return self
end

local subclass_of  -- forward

-- middleclass 3.x: Class:isSubclassOf(other) -- strict (a class is not its
-- own subclass).
function Object.static:isSubclassOf(other)
    return subclass_of(other, self)
end

-- middleclass 3.x: Class:includes(mixin), also true when an ancestor did.
function Object.static:includes(mixin)
    local klass = self
    while is_class(klass) do
        if klass.__mixins[mixin] then return true end
        klass = klass.super
    end
    return false
end

function Object:initialize() end

function Object:__tostring()
    return "instance of " .. tostring(self.class)
end

-- middleclass 3.x: obj:isInstanceOf(Class).
function Object:isInstanceOf(aClass)
    if type(self) ~= "table" then return false end
    -- The instance's own field, else its class's methods' (classes whose
    -- instances do not carry it, as turbo_ws.websocket's handlers).
    local klass = rawget(self, "class")
    local dict = getmetatable(self)
    if klass == nil and type(dict) == "table" then klass = rawget(dict, "class") end
    if not is_class(aClass) or not is_class(klass) then return false end
    while klass do
        if klass == aClass then return true end
        klass = klass.super
    end
    return false
end

--------------------------------------------------------------------------
-- middleclass 2.0 free functions (argument order as in middleclass 2.0).

--- Is `aClass` a strict descendant of `other`?
subclass_of = function(other, aClass)
    if not is_class(other) or not is_class(aClass) then return false end
    local klass = aClass.super
    while klass do
        if klass == other then return true end
        klass = klass.super
    end
    return false
end

--- Is `obj` an instance of `aClass` or of one of its descendants?
local function instance_of(aClass, obj)
    return Object.isInstanceOf(obj, aClass)
end

--- Did `aClass` or one of its ancestors include `mixin`?
local function includes(mixin, aClass)
    if not is_class(aClass) then return false end
    return Object.includes(aClass, mixin)
end

--------------------------------------------------------------------------
-- Module table: callable as class(name, super).

local M = {
    Object = Object,
    instanceOf = instance_of,
    subclassOf = subclass_of,
    includes = includes,
    isClass = is_class,
}

--- Copy Turbo's (middleclass 2.0) globals into `env` (default: _G).
function M.install(env)
    env = env or _G
    env.class = M
    env.Object = Object
    env.instanceOf = instance_of
    env.subclassOf = subclass_of
    env.includes = includes
    return M
end

return setmetatable(M, {
    __call = function(_, name, super, ...)
        super = super or Object
        assert(is_class(super), "class(name, super): super must be a class")
        return super:subclass(name, ...)
    end,
})
