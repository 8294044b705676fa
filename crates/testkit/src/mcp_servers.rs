//! Where the MCP reference servers from npm (`@modelcontextprotocol/server-everything`
//! and `server-filesystem`) are installed for tests: `scripts/test.sh`
//! installs them into `.ci/node` and names the `node_modules` folder in
//! `REIN_MCP_NODE_MODULES`.

use std::path::{Path, PathBuf};

/// The `node_modules` folder holding the reference servers. With
/// `REIN_MCP_NODE_MODULES` set it must hold them (the test fails loudly);
/// without it the default install location is tried, and when the servers
/// are not there either the test should be skipped (`None`, with a message
/// on stderr) — unless `CI` is set, where a missing install is a failure.
pub fn node_modules() -> Option<PathBuf> {
    let installed = |dir: &Path| dir.join("@modelcontextprotocol/server-everything/dist/index.js").is_file();
    if let Some(dir) = std::env::var_os("REIN_MCP_NODE_MODULES").map(PathBuf::from) {
        assert!(
            installed(&dir),
            "REIN_MCP_NODE_MODULES={} holds no @modelcontextprotocol/server-everything; scripts/test.sh installs it",
            dir.display()
        );
        return Some(dir);
    }
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/node/node_modules");
    if installed(&default) {
        return Some(default);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the MCP reference servers are not installed; scripts/test.sh installs them into .ci/node"
    );
    eprintln!("skipped: the MCP reference servers are not installed (scripts/test.sh installs them into .ci/node)");
    None
}

/// The entry point of reference server `package` (`server-everything`,
/// `server-filesystem`), to run with `node`.
pub fn script(node_modules: &Path, package: &str) -> String {
    node_modules.join("@modelcontextprotocol").join(package).join("dist/index.js").display().to_string()
}
