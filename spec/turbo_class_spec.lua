-- Specs for turbo_ws.class: middleclass 2.0 semantics as bundled by Turbo,
-- plus the middleclass 3.x method spellings.

local class = require "turbo_ws.class"

describe("turbo_ws.class", function()
  it("does not touch globals when loaded (turbo_ws itself installs them)", function()
    local names = { "class", "Object", "instanceOf", "subclassOf", "includes" }
    local saved = {}
    for _, n in ipairs(names) do saved[n] = rawget(_G, n); rawset(_G, n, nil) end
    package.loaded["turbo_ws.class"] = nil
    local fresh = require "turbo_ws.class"
    local leaked = {}
    for _, n in ipairs(names) do
      if rawget(_G, n) ~= nil then leaked[#leaked + 1] = n end
      rawset(_G, n, saved[n])
    end
    package.loaded["turbo_ws.class"] = class
    assert.are.same({}, leaked)
    assert.is_function(getmetatable(fresh).__call)
  end)

  it("is installed as the global class by require 'turbo_ws'", function()
    assert.is_not_nil(rawget(_G, "class"))
    assert.is_function(rawget(_G, "instanceOf"))
  end)

  describe("class creation", function()
    it("names classes and prints them like middleclass", function()
      local Foo = class("Foo")
      assert.are.equal("Foo", Foo.name)
      assert.are.equal("class Foo", tostring(Foo))
      assert.are.equal(class.Object, Foo.super)
    end)

    it("requires a string name", function()
      assert.has_error(function() class() end)
      assert.has_error(function() class(42) end)
    end)

    it("rejects a super that is not a class", function()
      assert.has_error(function() class("X", {}) end)
    end)

    it("is callable and new() runs initialize with all arguments", function()
      local Point = class("Point")
      function Point:initialize(x, y) self.x, self.y = x, y end
      local a, b = Point(1, 2), Point:new(3, 4)
      assert.are.same({ 1, 2, 3, 4 }, { a.x, a.y, b.x, b.y })
      assert.are.equal(Point, a.class)
    end)

    it("prints instances as 'instance of class X'", function()
      local Foo = class("Foo")
      assert.are.equal("instance of class Foo", tostring(Foo()))
    end)

    it("Object is exported and is the root", function()
      assert.are.equal("Object", class.Object.name)
      assert.is_nil(class.Object.super)
      assert.is_true(class.isClass(class.Object))
      assert.is_false(class.isClass({}))
    end)
  end)

  describe("inheritance", function()
    local Animal, Dog
    before_each(function()
      Animal = class("Animal")
      function Animal:initialize(name) self.name = name end
      function Animal:speak() return self.name .. " makes a sound" end
      function Animal:kind() return "animal" end
      Dog = class("Dog", Animal)
      function Dog:initialize(name, breed)
        Animal.initialize(self, name)
        self.breed = breed
      end
      function Dog:speak() return self.name .. " barks" end
    end)

    it("overrides and inherits methods", function()
      local d = Dog("Rex", "lab")
      assert.are.equal("Rex barks", d:speak())
      assert.are.equal("animal", d:kind())
      assert.are.equal("lab", d.breed)
    end)

    it("exposes super and lets methods call the parent version", function()
      assert.are.equal(Animal, Dog.super)
      local d = Dog("Rex")
      assert.are.equal("Rex makes a sound", Dog.super.speak(d))
    end)

    it("uses the parent initialize when the subclass has none", function()
      local Cat = class("Cat", Animal)
      assert.are.equal("Tom", Cat("Tom").name)
    end)

    it("sees methods added to the parent after subclassing", function()
      function Animal:legs() return 4 end
      assert.are.equal(4, Dog("Rex"):legs())
    end)

    it("supports A:subclass(name) and the subclassed hook", function()
      local seen
      function Animal.static:subclassed(other) seen = other end
      local Bird = Animal:subclass("Bird")
      assert.are.equal(Bird, seen)
      assert.are.equal(Animal, Bird.super)
      assert.is_true(Animal.subclasses[Bird])
      assert.are.equal("Tweety makes a sound", Bird("Tweety"):speak())
    end)

    it("reads instance methods through the class table", function()
      assert.are.equal(Dog.speak, Dog.__instanceDict.speak)
      assert.are.equal(Animal.kind, Dog.kind)
    end)

    it("keeps instance fields per instance", function()
      local a, b = Dog("A"), Dog("B")
      assert.are.equal("A", a.name)
      assert.are.equal("B", b.name)
    end)
  end)

  describe("static members", function()
    it("are reachable from the class and inherited by subclasses", function()
      local Base = class("Base")
      Base.static.counter = 0
      function Base.static:make() return self() end
      local Sub = class("Sub", Base)
      assert.are.equal(0, Sub.counter)
      assert.are.equal(Sub, Sub:make().class)
    end)

    it("are not visible from instances", function()
      local Base = class("Base")
      Base.static.only_static = true
      assert.is_nil(Base().only_static)
    end)
  end)

  describe("metamethods", function()
    local Vec
    before_each(function()
      Vec = class("Vec")
      function Vec:initialize(x) self.x = x end
      function Vec.__add(a, b) return Vec(a.x + b.x) end
      function Vec.__eq(a, b) return a.x == b.x end
      function Vec.__lt(a, b) return a.x < b.x end
      function Vec.__le(a, b) return a.x <= b.x end
      function Vec:__tostring() return "Vec(" .. self.x .. ")" end
      function Vec:__call(n) return self.x * n end
      function Vec.__concat(a, b) return tostring(a) .. tostring(b) end
      function Vec.__unm(a) return Vec(-a.x) end
    end)

    it("apply to instances", function()
      local v = Vec(1) + Vec(2)
      assert.are.equal(3, v.x)
      assert.are.equal("Vec(3)", tostring(v))
      assert.is_true(Vec(1) == Vec(1))
      assert.is_true(Vec(1) < Vec(2))
      assert.is_true(Vec(2) <= Vec(2))
      assert.are.equal(10, Vec(5)(2))
      assert.are.equal("Vec(1)Vec(2)", Vec(1) .. Vec(2))
      assert.are.equal(-4, (-Vec(4)).x)
    end)

    it("are inherited by subclasses, including ones defined later", function()
      local Sub = class("Sub", Vec)
      local Grand = class("Grand", Sub)
      assert.are.equal("Vec(7)", tostring(Sub(7)))
      function Vec.__mul(a, k) return Vec(a.x * k) end
      assert.are.equal(6, (Sub(3) * 2).x)
      assert.are.equal(8, (Grand(4) * 2).x)
    end)

    it("can be overridden, and removing the override restores the parent", function()
      local Sub = class("Sub", Vec)
      function Sub:__tostring() return "Sub" end
      assert.are.equal("Sub", tostring(Sub(1)))
      function Vec:__tostring() return "changed" end
      assert.are.equal("Sub", tostring(Sub(1)))
      Sub.__tostring = nil
      assert.are.equal("changed", tostring(Sub(1)))
    end)

    it("falls back to Object's __tostring", function()
      local Plain = class("Plain")
      local Deeper = class("Deeper", Plain)
      assert.are.equal("instance of class Deeper", tostring(Deeper()))
    end)
  end)

  describe("mixins", function()
    it("copies members, static members and runs the included hook", function()
      local hooked
      local Mixin = {
        greet = function(self) return "hi " .. self.name end,
        flag = 42,
        static = { build = function(klass) return klass("built") end },
        included = function(mixin, klass) hooked = { mixin, klass } end,
      }
      local Person = class("Person")
      function Person:initialize(name) self.name = name end
      assert.are.equal(Person, Person:include(Mixin))
      local p = Person("ann")
      assert.are.equal("hi ann", p:greet())
      assert.are.equal(42, p.flag)
      assert.are.equal("built", Person:build().name)
      assert.are.same({ Mixin, Person }, hooked)
      assert.is_nil(p.included)
      assert.is_nil(rawget(Person.__instanceDict, "static"))
    end)

    it("accepts several mixins at once and mixin metamethods work", function()
      local A = { a = function() return "a" end }
      local B = { __tostring = function() return "from mixin" end }
      local K = class("K"):include(A, B)
      local Sub = class("Sub", K)
      assert.are.equal("a", Sub():a())
      assert.are.equal("from mixin", tostring(Sub()))
    end)

    it("is what Turbo does with WebSocketStream (plain table mixin)", function()
      local Stream = {}
      function Stream:closed() return self._closed end
      local Base = class("RequestHandler")
      local Handler = class("WebSocketHandler", Base)
      Handler:include(Stream)
      local User = class("User", Handler)
      local u = User()
      u._closed = true
      assert.is_true(u:closed())
    end)

    it("rejects non-table mixins", function()
      assert.has_error(function() class("X"):include(42) end)
    end)

    it("tracks inclusion through includes() both ways", function()
      local M = {}
      local Base = class("Base"):include(M)
      local Sub = class("Sub", Base)
      assert.is_true(class.includes(M, Sub))
      assert.is_true(Sub:includes(M))
      assert.is_false(class.includes({}, Sub))
      assert.is_false(class.includes(M, {}))
    end)
  end)

  describe("type checks", function()
    local A, B, C, Other
    before_each(function()
      A = class("A")
      B = class("B", A)
      C = class("C", B)
      Other = class("Other")
    end)

    it("instanceOf(class, obj) as in middleclass 2.0", function()
      local c = C()
      assert.is_true(class.instanceOf(C, c))
      assert.is_true(class.instanceOf(A, c))
      assert.is_true(class.instanceOf(class.Object, c))
      assert.is_false(class.instanceOf(Other, c))
      assert.is_false(class.instanceOf(C, B()))
      assert.is_false(class.instanceOf(A, {}))
      assert.is_false(class.instanceOf(A, nil))
      assert.is_false(class.instanceOf(A, "str"))
      assert.is_false(class.instanceOf({}, c))
    end)

    it("obj:isInstanceOf(class) as in middleclass 3.x", function()
      local b = B()
      assert.is_true(b:isInstanceOf(B))
      assert.is_true(b:isInstanceOf(A))
      assert.is_false(b:isInstanceOf(C))
      assert.is_false(b:isInstanceOf(Other))
      assert.is_false(b:isInstanceOf(nil))
    end)

    it("subclassOf(parent, class) is strict", function()
      assert.is_true(class.subclassOf(A, C))
      assert.is_true(class.subclassOf(B, C))
      assert.is_false(class.subclassOf(C, C))
      assert.is_false(class.subclassOf(C, A))
      assert.is_false(class.subclassOf(Other, C))
      assert.is_false(class.subclassOf({}, C))
    end)

    it("Class:isSubclassOf(parent) as in middleclass 3.x", function()
      assert.is_true(C:isSubclassOf(A))
      assert.is_false(A:isSubclassOf(C))
      assert.is_false(A:isSubclassOf(A))
    end)
  end)

  describe("install", function()
    it("puts Turbo's globals into a given environment", function()
      local env = {}
      assert.are.equal(class, class.install(env))
      assert.are.equal(class, env.class)
      assert.are.equal(class.Object, env.Object)
      assert.are.equal(class.instanceOf, env.instanceOf)
      assert.are.equal(class.subclassOf, env.subclassOf)
      assert.are.equal(class.includes, env.includes)
      local Foo = env.class("Foo")
      assert.is_true(env.instanceOf(Foo, Foo()))
    end)
  end)
end)
