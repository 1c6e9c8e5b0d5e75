//! One line per event: UTC time (RFC 3339, ms), level, node id, message;
//! level from RUST_LOG (default info).

use std::io::Write;

/// Sets up logging for node `id`. Calling it twice does nothing more.
pub fn init(id: &str) {
    let id = id.to_string();
    let _ = env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,tide=warn"),
    )
    .format(move |buf, record| {
        let at = buf.timestamp_millis();
        writeln!(buf, "{at} {} node={} {}", record.level(), id, record.args())
    })
    .try_init();
}
