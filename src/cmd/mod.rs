//! One file per subcommand. This is the binary's edge: errors become `anyhow`
//! with context here, and nowhere else.

pub mod check_config;
pub mod demo;
pub mod eval;
pub mod lists;
pub mod provision;
pub mod run;
pub mod version;

/// Sets up logging to stderr (journald picks it up under systemd).
pub fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless; ignore it.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
