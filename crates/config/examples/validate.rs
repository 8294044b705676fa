//! Validates the agent files given as arguments and prints every diagnostic,
//! like `rein validate` will: `cargo run -p rein-config --example validate -- agent.toml`.

fn main() {
    let mut failed = false;
    for path in std::env::args().skip(1) {
        let report = rein_config::validate_agent(std::path::Path::new(&path));
        println!("{report}");
        if let Some(agent) = &report.agent {
            println!("version {}, tools: {}", agent.spec.version().short(), agent.tools.len());
        }
        failed |= report.has_errors();
    }
    std::process::exit(i32::from(failed));
}
