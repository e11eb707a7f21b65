--- turbo_ws.platform -- Turbo's `turbo.platform`: what the program runs
-- on, as boolean flags. Under LuaJIT from `jit.os`, `jit.arch` and
-- `ffi.abi`; under PUC Lua from `uname` and the size of a size_t.

local jit = rawget(_G, "jit")

local os_name, arch, abi64
if jit then
  os_name, arch = jit.os, jit.arch
  local ok, ffi = pcall(require, "ffi")
  if ok then abi64 = ffi.abi("64bit") end
else
  local windows = package.config:sub(1, 1) == "\\"
  os_name, arch = windows and "Windows" or "Other", "unknown"
  if not windows then
    local ok, p = pcall(io.popen, "uname -sm 2>/dev/null")
    local line = ok and p and p:read("*l") or ""
    if ok and p then p:close() end
    local sys, machine = line:match("^(%S+)%s+(%S+)")
    if sys == "Linux" then os_name = "Linux" elseif sys == "Darwin" then os_name = "OSX" end
    local arches = {
      x86_64 = "x64", amd64 = "x64", i386 = "x86", i686 = "x86", aarch64 = "arm64",
      arm64 = "arm64", ppc64le = "ppc64le", mips = "mips", mipsel = "mipsel",
    }
    arch = arches[machine or ""] or ((machine or ""):match("^arm") and "arm") or "unknown"
  end
  if string.packsize then abi64 = string.packsize("T") == 8 end
end
if abi64 == nil then
  abi64 = arch == "x64" or arch == "arm64" or arch == "ppc64le" or arch == "mips64" or arch == "mips64el"
end

local linux, darwin = os_name == "Linux", os_name == "OSX"

return {
  __WINDOWS__ = os_name == "Windows",
  __UNIX__ = linux or darwin or os_name == "BSD" or os_name == "POSIX",
  __LINUX__ = linux,
  __DARWIN__ = darwin,
  __ABI32__ = not abi64,
  __ABI64__ = abi64,
  __X86__ = arch == "x86",
  __X64__ = arch == "x64",
  __PPC__ = arch == "ppc",
  __PPC64__ = arch == "ppc64le",
  __ARM__ = arch == "arm",
  __ARM64__ = arch == "arm64",
  __MIPSEL__ = arch == "mipsel" or arch == "mips",
}
