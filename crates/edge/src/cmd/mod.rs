//! One file per subcommand. This is the binary's edge: errors become `anyhow`
//! with context here, and nowhere else.

pub mod check_config;
pub mod lists;
pub mod passwd;
pub mod provision;
pub mod run;
pub mod version;

/// Sets up logging at `level` (a tracing filter; `RUST_LOG` wins when set).
/// Under systemd (`JOURNAL_STREAM` set) events go to journald as structured
/// fields (`journalctl -o verbose` shows each field, e.g. `CAMERA=north`);
/// elsewhere as text, or JSON lines with `json`, on stderr.
pub fn init_logging(level: &str, json: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        match tracing_journald::layer() {
            Ok(journald) => {
                // A second init (tests) is harmless; ignore it.
                let _ = tracing_subscriber::registry()
                    .with(filter)
                    .with(journald.with_syslog_identifier("anpr-edge".into()))
                    .try_init();
                return;
            }
            Err(e) => eprintln!("journald unreachable ({e}); logging to stderr"),
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
