//! Embeds every Lua file under `lua/` into the library, so the installed
//! artifact is one `turbo_ws.so`. `lua/turbo_ws/web.lua` becomes the module
//! `turbo_ws.web`.

use std::path::{Path, PathBuf};
use std::{env, fs};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "lua") {
            out.push(path);
        }
    }
}

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let lua_dir = root.join("lua");
    println!("cargo:rerun-if-changed=lua");
    let mut files = Vec::new();
    collect(&lua_dir, &mut files);
    files.sort();
    let mut code = String::from("/// (module name, chunk name, source) of every embedded Lua file.\npub const MODULES: &[(&str, &str, &str)] = &[\n");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let rel = file.strip_prefix(&lua_dir).expect("collected under lua/");
        let rel_str = rel.to_string_lossy().replace('\\', "/");
        let name = rel_str.trim_end_matches(".lua").replace('/', ".");
        code.push_str(&format!(
            "    ({name:?}, \"@{rel_str}\", include_str!({:?})),\n",
            file.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded_lua.rs");
    fs::write(out, code).expect("write embedded_lua.rs");
}
