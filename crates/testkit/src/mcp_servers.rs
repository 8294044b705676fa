//! Where the MCP reference servers from npm (`@modelcontextprotocol/server-everything`
//! and `server-filesystem`) are installed for tests: `scripts/test.sh`
//! installs them into `.ci/node` and names the `node_modules` folder in
//! `REIN_MCP_NODE_MODULES`. And where the official Python MCP SDK, the
//! client `rein mcp serve` is tested with, is: `.ci/py`, named in
//! `REIN_MCP_PYTHON`.

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

/// The Python interpreter whose environment holds the official MCP SDK
/// (`mcp` from PyPI), the independent client `rein mcp serve` is tested
/// with. `scripts/test.sh` installs it into `.ci/py` and names the
/// interpreter in `REIN_MCP_PYTHON`; with that set the SDK must be there
/// (the test fails loudly). Without it the default install is tried, and
/// when it is missing too the test should be skipped (`None`, with a
/// message) — unless `CI` is set, where that is a failure.
pub fn python_client() -> Option<PathBuf> {
    let has_sdk = |python: &Path| {
        std::process::Command::new(python)
            .args(["-c", "import mcp, mcp.client.client"])
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if let Some(python) = std::env::var_os("REIN_MCP_PYTHON").map(PathBuf::from) {
        assert!(
            has_sdk(&python),
            "REIN_MCP_PYTHON={} cannot import the `mcp` package; scripts/test.sh installs it into .ci/py",
            python.display()
        );
        return Some(python);
    }
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/py/bin/python");
    if default.is_file() && has_sdk(&default) {
        return Some(default);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the Python MCP SDK is not installed; scripts/test.sh installs it into .ci/py"
    );
    eprintln!("skipped: the Python MCP SDK is not installed (scripts/test.sh installs it into .ci/py)");
    None
}
