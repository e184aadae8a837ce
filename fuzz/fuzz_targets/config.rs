//! A configuration file as an operator writes it: read and checked with no
//! flags given, as `aitier serve --config FILE` does. Refused with a message
//! or accepted; never a panic.
#![no_main]
use aitier_config::{ServeArgs, ServeConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The file names files that are then read (chat templates): devices
    // and the kernel's files may never end.
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    let _ = ServeConfig::from_toml(&ServeArgs::default(), text);
});
